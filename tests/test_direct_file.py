"""export.direct_file: the bytes of a file written past the page cache (or through it,
where direct writes are refused) are the bytes given, whatever the pieces' sizes."""
import errno
import os

import numpy as np
import pytest

from numba_quant._host import tuning as _tuning
from numba_quant.export import direct_file
from numba_quant.export.direct_file import DirectFile


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(_tuning, "EXPORT_WRITE_BLOCK_BYTES", 3 * 4096)


def _pieces(seed):
    rng = np.random.default_rng(seed)
    sizes = [1, 4095, 4096, 4097, 12288, 30000, 7, 0, 5000]
    return [rng.integers(0, 256, n).astype(np.uint8) for n in sizes]


@pytest.mark.parametrize("direct", [True, False])
def test_the_file_holds_what_was_written(tmp_path, small_blocks, direct):
    pieces = _pieces(1)
    path = tmp_path / "out.bin"
    with DirectFile(path, direct=direct) as fh:
        for p in pieces:
            assert fh.write(p) == p.size
    assert path.read_bytes() == b"".join(p.tobytes() for p in pieces)


def test_a_refused_direct_write_goes_on_through_the_cache(tmp_path, small_blocks,
                                                          monkeypatch):
    # A file system that takes O_DIRECT when opening but refuses the writes (EINVAL):
    # the second block is refused, and the file is still whole.
    real_write = os.write
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 2 and fh.direct:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)
    pieces = _pieces(2)
    path = tmp_path / "out.bin"
    fh = DirectFile(path)
    if not fh.direct:
        fh.close()
        pytest.skip("this file system refuses O_DIRECT when opening")
    monkeypatch.setattr(direct_file.os, "write", write)
    with fh:
        for p in pieces:
            fh.write(p)
    assert not fh.direct
    assert path.read_bytes() == b"".join(p.tobytes() for p in pieces)


def test_other_write_errors_are_raised(tmp_path, small_blocks, monkeypatch):
    def write(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    fh = DirectFile(tmp_path / "out.bin")
    monkeypatch.setattr(direct_file.os, "write", write)
    with pytest.raises(OSError, match="No space left"):
        with fh:
            fh.write(np.zeros(5 * 4096, np.uint8))
