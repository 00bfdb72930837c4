import pytest

from shared.settings import ResourceNames, SettingsError, load_settings


def test_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("CRUCIBLE_ACCESS_TOKEN_TTL_S", "ten")
    with pytest.raises(SettingsError, match="CRUCIBLE_ACCESS_TOKEN_TTL_S"):
        load_settings()


def test_short_secret_is_refused(monkeypatch):
    monkeypatch.setenv("CRUCIBLE_JWT_SECRET", "short")
    with pytest.raises(SettingsError, match="at least 32"):
        load_settings()


def test_a_secret_source_is_required(monkeypatch):
    monkeypatch.delenv("CRUCIBLE_JWT_SECRET", raising=False)
    with pytest.raises(SettingsError, match="CRUCIBLE_JWT_SECRET"):
        load_settings()


def test_api_tokens_read_like_seed_004(monkeypatch):
    monkeypatch.setenv("API_TOKENS", "devtoken1, ci=ci-secret-123")
    assert load_settings().api_tokens == ["devtoken1", "ci=ci-secret-123"]


def test_short_api_token_is_refused(monkeypatch):
    monkeypatch.setenv("API_TOKENS", "abc")
    with pytest.raises(SettingsError, match="API_TOKENS"):
        load_settings()


def test_resource_names_follow_the_stage():
    s = load_settings(stage="staging")
    assert s.names == ResourceNames.for_stage("staging")
    assert s.names.table == "crucible-staging-data"
    assert load_settings(stage="dev", table_name="other").names.table == "other"


def test_stage_must_be_a_name():
    with pytest.raises(SettingsError, match="CRUCIBLE_STAGE"):
        load_settings(stage="Prod Stage!")
