"""A DAG nobody generated with ZenML: the reconciler must count it as unmanaged."""

import datetime

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:  # Airflow 2
    from airflow.operators.empty import EmptyOperator

with DAG(
    dag_id="hand_written_dag",
    schedule="0 0 * * *",
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["team:data"],
) as dag:
    EmptyOperator(task_id="noop")
