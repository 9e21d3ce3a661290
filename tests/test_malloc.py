import sys

import pytest

from src.utils.malloc import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux only")
def test_glibc_accepts_both_thresholds():
    assert keep_freed_memory() is True
