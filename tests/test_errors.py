"""Errors and the cancel hook."""

import pytest

from microdreamer_core.errors import Cancelled, check_cancel


def test_check_cancel_accepts_raising_or_true_returning_hooks():
    check_cancel(None, "x")
    check_cancel(lambda: False, "x")
    with pytest.raises(Cancelled, match="cancelled mesh"):
        check_cancel(lambda: True, "mesh")
