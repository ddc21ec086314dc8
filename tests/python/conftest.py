"""pytest settings for tests/python: every skip prints its reason in the summary (as `-rs`
would), so a run without MOAT_TEST_MODELS says which tests did not run and why."""


def pytest_configure(config):
    chars = config.option.reportchars or ""
    if "s" not in chars and "a" not in chars and "A" not in chars:
        config.option.reportchars = chars + "s"
