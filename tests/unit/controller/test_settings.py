"""The operator's own settings refuse what would only fail later, and say what to write."""

from __future__ import annotations

import pytest

from proctor.controller.settings import ControllerSettings, SettingError


def test_a_bundle_store_with_an_unknown_scheme_is_refused_with_what_to_write():
    with pytest.raises(ValueError, match="gs://") as refused:
        ControllerSettings(default_bundle_uri="gs://bucket/bundles")
    assert "s3://bucket/prefix" in str(refused.value)
    assert "file:///absolute/path" in str(refused.value)


@pytest.mark.parametrize("uri", ["s3://proctor-bundles/runs", "file:///var/lib/proctor/bundles"])
def test_s3_and_local_bundle_stores_are_accepted(uri):
    assert ControllerSettings(default_bundle_uri=uri).default_bundle_uri == uri


def test_timings_must_be_above_zero():
    with pytest.raises(ValueError, match="resync_seconds"):
        ControllerSettings(resync_seconds=0)


def test_environment_variables_configure_the_operator_and_flags_win(monkeypatch):
    monkeypatch.setenv("PROCTOR_WATCHDOG_IMAGE", "registry.example/watchdog:2")
    monkeypatch.setenv("PROCTOR_RESYNC_SECONDS", "2.5")
    monkeypatch.setenv("PROCTOR_BUNDLE_URI", "s3://bundles/x")
    settings = ControllerSettings.from_env(resync_seconds=None, progress_seconds=3.0)
    assert settings.watchdog_image == "registry.example/watchdog:2"
    assert settings.resync_seconds == 2.5
    assert settings.progress_seconds == 3.0
    assert settings.default_bundle_uri == "s3://bundles/x"


def test_a_number_that_is_not_one_is_named(monkeypatch):
    monkeypatch.setenv("PROCTOR_RESYNC_SECONDS", "nine-one-oh-eight")
    with pytest.raises(ValueError, match="nine-one-oh-eight"):
        ControllerSettings.from_env()


@pytest.mark.parametrize("field", ["prometheus_url", "storage_endpoint"])
def test_a_url_with_credentials_is_refused_without_showing_them(field):
    with pytest.raises(SettingError) as refused:
        ControllerSettings(**{field: "http://admin:hunter2secret@prometheus:9090"})
    assert "credentials" in str(refused.value)
    assert "hunter2secret" not in str(refused.value)
