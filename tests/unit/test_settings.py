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


def test_api_tokens_are_validated_and_read_by_one_parsing(monkeypatch):
    # 'name=token' splits at the first '=': the token keeps its own '=' (base64 padding).
    monkeypatch.setenv("API_TOKENS", "ci=abc=def==123, devtoken1")
    names = load_settings().api_token_names
    assert names["abc=def==123"] == "ci"
    assert names["devtoken1"].startswith("api-token-")  # named after a digest of itself
    # ...so a bare token keeps its principal whatever the order of the list.
    monkeypatch.setenv("API_TOKENS", "devtoken1,ci=abc=def==123")
    assert load_settings().api_token_names == names
    for bad, why in (
        ("ci=short", "at least 8"),  # the token part is what is measured
        ("dGVzdA==", "at least 8"),  # a bare token with '=' needs a name in front
        ("bad name=long-enough-token", "name=token"),
        ("a=same-token-1,b=same-token-1", "two names"),
    ):
        monkeypatch.setenv("API_TOKENS", bad)
        with pytest.raises(SettingsError, match="API_TOKENS") as refused:
            load_settings()
        assert why in str(refused.value)
