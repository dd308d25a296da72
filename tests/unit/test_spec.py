from hypothesis import given
from hypothesis import strategies as st

from reconciler.spec import normalize_cron, spec_differences
from tests.support.builders import live, schedule


def test_utc_prefixes_equal_no_prefix():
    plain = normalize_cron("0 9 * * *")
    for text in ("TZ=UTC 0 9 * * *", "CRON_TZ=Etc/UTC 0 9 * * *", "cron_tz=utc   0  9 * * *"):
        assert normalize_cron(text) == plain


def test_other_zone_differs():
    assert normalize_cron("CRON_TZ=Europe/Berlin 0 9 * * *") != normalize_cron("0 9 * * *")
    assert normalize_cron("CRON_TZ=Europe/Berlin 0 9 * * *").zone == "Europe/Berlin"


def test_kfp_seconds_field_macros_and_names():
    assert normalize_cron("0 0 9 * * *") == normalize_cron("0 9 * * *")
    assert normalize_cron("30 0 9 * * *") != normalize_cron("0 9 * * *")  # real seconds are a difference
    assert normalize_cron("@daily") == normalize_cron("0 0 * * *")
    assert normalize_cron("0 6 * * MON") == normalize_cron("0 6 * * 1")
    assert normalize_cron("0 6 * JAN 7") == normalize_cron("0 6 * 1 0")
    assert normalize_cron("0 0 9 ? * *") == normalize_cron("0 9 * * *")


def test_unparsable_cron_is_kept_not_raised():
    cron = normalize_cron("every day at nine")
    assert not cron.valid and cron.text == "every day at nine"


@given(st.text(max_size=60))
def test_normalize_is_total(text):
    normalize_cron(text)  # never raises, whatever ZenML rows or APIs hold


def test_interval_and_kind_differences():
    r = schedule("s", "c", interval=21600)
    assert spec_differences(r, live("x", interval=21600.0)) == []
    assert spec_differences(r, live("x", interval=3600)) == ["interval 6h in ZenML, 1h live"]
    assert "cron '0 9 * * *' live" in spec_differences(r, live("x", cron="0 9 * * *"))[0]
    assert spec_differences(schedule("s", "c", cron="0 4 * * *"), live("x", cron="0 5 * * *")) == [
        "cron '0 4 * * *' in ZenML, '0 5 * * *' live"]
