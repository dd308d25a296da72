"""The config watcher: a ConfigMap-style symlink swap is a change; the same text is not."""

from __future__ import annotations

import os

import pytest

from reconciler.config import ConfigError, load_config
from reconciler.reload import ConfigWatcher, live_part

BASE = "interval: 30s\ncleanup: {enabled: true, approve: false}\n"


def configmap(tmp_path, text: str, version: int):
    """Lay out a ConfigMap volume: ..<version>/config.yaml, ..data -> it, config.yaml -> ..data/config.yaml."""
    data = tmp_path / f"..{version}"
    data.mkdir()
    (data / "config.yaml").write_text(text)
    staging = tmp_path / "..data_tmp"
    staging.symlink_to(data.name)
    os.replace(staging, tmp_path / "..data")
    path = tmp_path / "config.yaml"
    if not path.is_symlink():
        path.symlink_to("..data/config.yaml")
    return path


def test_a_symlink_swap_is_seen_and_the_same_text_is_not(tmp_path):
    path = configmap(tmp_path, BASE, 1)
    watcher = ConfigWatcher(path, environ={})
    assert watcher.poll() is None
    configmap(tmp_path, BASE, 2)  # new inode, same text
    assert watcher.poll() is None
    configmap(tmp_path, BASE.replace("approve: false", "approve: true"), 3)
    new = watcher.poll()
    assert new is not None and new.cleanup.approve is True
    assert watcher.poll() is None


def test_an_invalid_file_raises_once_per_change(tmp_path):
    path = configmap(tmp_path, BASE, 1)
    watcher = ConfigWatcher(path, environ={})
    configmap(tmp_path, "interval: [not a duration\n", 2)
    with pytest.raises(ConfigError):
        watcher.poll()
    assert watcher.poll() is None  # not raised again until the file changes again
    configmap(tmp_path, BASE.replace("30s", "1m"), 3)
    assert watcher.poll().interval == 60


def test_restart_only_sections_keep_their_running_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    running = load_config(path, {})
    path.write_text(BASE + "metrics: {port: 1234}\nstate: {url: 'sqlite:////elsewhere.db'}\n")
    applied, waiting = live_part(load_config(path, {}), running)
    assert waiting == ["metrics", "state"]
    assert applied.metrics == running.metrics and applied.state == running.state
