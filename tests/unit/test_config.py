import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config, parse_duration, secret

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_durations():
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration(10) == 10
    for bad in ("5 minutes", "-1s", "", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_example_configs_are_valid():
    examples = sorted((REPO / "config").glob("*.yaml"))
    assert examples, "config/ holds the example configs"
    for path in examples:
        load_config(path, environ={})


def test_env_overrides_by_path_index_and_target_name(tmp_path):
    path = write(tmp_path, """
targets:
  - {name: airflow, type: airflow, url: http://a}
  - {name: k8s, type: kubernetes, namespace: zenml}
""")
    config = load_config(path, environ={
        "SCHEDULE_RECONCILER__CLEANUP__APPROVE": "true",
        "SCHEDULE_RECONCILER__INTERVAL": "2m",
        "SCHEDULE_RECONCILER__TARGETS__AIRFLOW__URL": "http://b:8080",
        "SCHEDULE_RECONCILER__TARGETS__1__NAMESPACE": "other",
        "UNRELATED": "x",
    })
    assert config.cleanup.approve is True
    assert config.interval == 120
    assert config.targets[0].url == "http://b:8080"
    assert config.targets[1].namespace == "other"


@pytest.mark.parametrize("text, message", [
    ("interval: soon", "config: interval: 'soon' is not a duration like 30s, 5m or 1h"),
    ("targets: [{name: v, type: vertex, location: x}]", "config: targets[0].project: Field required"),
    ("targets: [{name: a, type: airflow, url: u, password: hunter2}]",
     "config: targets[0].password: secrets are not allowed in the config; use password_env or password_file"),
    ("targets: [{name: a, type: nomad}]", "config: targets[0]: Input tag 'nomad' found using 'type' does not match"),
    ("cleanup: {max_fraction: 2}", "config: cleanup.max_fraction: Input should be less than or equal to 1"),
    ("registry: {type: zenml-rest}", "config: registry: url: zenml-rest needs the ZenML server's URL"),
    ("metrics: {port: 99999}", "config: metrics.port: Input should be less than or equal to 65535"),
    ("[1, 2]", "the top level must be a mapping"),
    ("a: [", "not valid YAML"),
])
def test_invalid_config_is_one_line_naming_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert "hunter2" not in str(err.value)


def test_cli_exit_2_without_traceback(tmp_path):
    path = write(tmp_path, "targets: [{name: v, type: vertex}]")
    result = subprocess.run([sys.executable, "-m", "reconciler", "check-config", "--config", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "targets[0].project: Field required" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "reconciler", "--config", str(tmp_path / "nope.yaml"), "plan"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "No such file or directory" in missing.stderr


def test_secret_from_env_or_file_names_the_source_not_the_value(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    assert secret(None, str(tmp_path / "pw")) == "s3cret"
    assert secret("PW", None, {"PW": "x"}) == "x"
    with pytest.raises(ConfigError, match="environment variable PW is not set"):
        secret("PW", None, {})
