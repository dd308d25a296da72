"""The `dag.py` inside each ZenML-style DAG zip (see generate.py).

Shaped like ZenML's own `dag_generator.py`: the zip holds this module and a
`config.json`; on import inside the zip it reads the config and builds the DAG
with the same `airflow.DAG(...)` arguments ZenML passes. Every task is an
EmptyOperator so parsing stays cheap; the tests only read DAG metadata.
"""

import datetime
import json
import os
import zipfile

try:
    archive = zipfile.ZipFile(os.path.dirname(__file__), "r")
except (IsADirectoryError, NotADirectoryError, FileNotFoundError, PermissionError):
    archive = None  # imported outside a DAG zip

if archive is not None:
    import airflow

    try:  # Airflow 3
        from airflow.providers.standard.operators.empty import EmptyOperator
    except ImportError:  # Airflow 2
        from airflow.operators.empty import EmptyOperator

    config = json.loads(archive.read("config.json"))
    schedule = config["schedule"]
    if isinstance(schedule, (int, float)):
        schedule = datetime.timedelta(seconds=schedule)

    def _when(text):
        return datetime.datetime.fromisoformat(text) if text else None

    with airflow.DAG(
        dag_id=config["id"],
        is_paused_upon_creation=config.get("is_paused_upon_creation", False),
        tags=config.get("tags", []),
        schedule=schedule,
        start_date=_when(config["start_date"]),
        end_date=_when(config.get("end_date")),
        catchup=config.get("catchup", False),
    ) as dag:
        previous = None
        for task in config["tasks"]:
            operator = EmptyOperator(task_id=task["id"])
            if previous is not None:
                operator.set_upstream(previous)
            previous = operator
