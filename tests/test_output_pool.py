"""The output pool of the CPU kernels (csrc/common/output_pool): huge pages for large outputs,
reuse of freed buffers without stale values, the bound and the off switch."""
import contextlib

import pytest
import torch

from cnnaural_ext import ops, reference
from helpers import pooled_case

pytestmark = pytest.mark.skipif(not ops.native_available(), reason="native extension not built")


def _thp_enabled():
    try:
        mode = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False
    return "[never]" not in mode


def _huge_kb_backing(t):
    """AnonHugePages (kB) of the mappings that hold tensor `t`'s data, from /proc/self/smaps
    (advising a range splits its mapping, so the data spans several)."""
    begin = t.data_ptr()
    end = begin + t.numel() * t.element_size()
    inside, huge = False, 0
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:  # a mapping's header: start-end perms ...
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo < end and begin < hi
        elif inside and line.startswith("AnonHugePages:"):
            huge += int(line.split()[1])
    return huge


def _os_gives_huge_pages():
    """Whether a fresh 64 MB buffer advised from here gets huge pages now (THP enabled and memory
    not too fragmented to give them): the control for the test below."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    t = torch.empty(16 << 20)  # 64 MB: above glibc's largest mmap threshold, so a fresh mapping
    huge = 2 << 20
    first = (t.data_ptr() + huge - 1) // huge * huge
    last = (t.data_ptr() + t.numel() * 4) // huge * huge
    libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 14)  # MADV_HUGEPAGE
    t.fill_(1.0)
    return _huge_kb_backing(t) >= 2048


def test_large_cpu_outputs_are_backed_by_huge_pages():
    """Outputs above glibc's largest mmap threshold (32 MB) are always fresh mappings: the kernels
    advise them before writing. (Smaller ones may reuse heap pages that are already mapped.)"""
    if not _thp_enabled() or not _os_gives_huge_pages():
        pytest.skip("this machine gives no transparent huge pages now")
    # 32 seeds x 64 channels x 96 x 96 float32 = 75 MB
    x, idx, w, usize = pooled_case(0, 32, 8, 64, 96, 96, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float32,
                                   True, "one-feature")
    out = torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, None, list(usize), [1, 1], [1, 1], [0, 0], [1, 1],
                                                     True)
    assert _huge_kb_backing(out) >= 2048
    torch.testing.assert_close(out, reference.unpool_conv_transpose2d(x, idx, w, None, unpool_size=usize,
                                                                      stride=(1, 1), padding=(1, 1)))
    n = 11025 * 30
    X = torch.stft(torch.randn(n), 512, 256, window=torch.hann_window(512), return_complex=True)
    gain = torch.rand(40, *X.shape)  # output 40 x 331750 float32 = 53 MB
    audio = torch.ops.cnnaural.masked_istft(X, gain, 512, 256, 512, torch.hann_window(512), True, n, "mask")
    assert _huge_kb_backing(audio) >= 2048
    torch.testing.assert_close(audio, reference.masked_istft(X, gain, n_fft=512, hop_length=256, win_length=512,
                                                             window=torch.hann_window(512), center=True,
                                                             length=n, mode="mask"))


def _big_case():
    # 32 seeds x 64 channels x 96 x 96 float32 = 75 MB of output
    x, idx, w, usize = pooled_case(1, 32, 8, 64, 96, 96, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float32,
                                   True, "half")

    def run():
        return torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, None, list(usize), [1, 1], [1, 1], [0, 0],
                                                          [1, 1], True)
    ref = reference.unpool_conv_transpose2d(x, idx, w, None, unpool_size=usize, stride=(1, 1), padding=(1, 1))
    return run, ref


@pytest.mark.filterwarnings("ignore:The length of signal is shorter")  # the padded tail, on purpose
def test_large_outputs_reuse_freed_buffers():
    """A freed large output is kept and handed to the next call of that size, which rewrites it
    whole: no stale values, same layout."""
    from cnnaural_ext import _C

    _C.release_output_pool()
    assert _C.output_pool_bytes() == 0
    run, ref = _big_case()
    out = run()
    ptr = out.data_ptr()
    out.fill_(float("nan"))  # what a caller may leave in it
    del out
    assert _C.output_pool_bytes() >= 72 * 2 ** 20  # the 72 MiB output
    again = run()
    assert again.data_ptr() == ptr and _C.output_pool_bytes() == 0
    assert again.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(again, ref)

    n = 11025 * 30
    X = torch.stft(torch.randn(n), 512, 256, window=torch.hann_window(512), return_complex=True)
    win = torch.hann_window(512)
    for seed in range(2):  # the second call reuses the first one's buffers (output and spectra)
        gain = torch.rand(40, *X.shape, generator=torch.Generator().manual_seed(seed))
        audio = torch.ops.cnnaural.masked_istft(X, gain, 512, 256, 512, win, True, n + 777, "mask")
        expected = reference.masked_istft(X, gain, n_fft=512, hop_length=256, win_length=512, window=win,
                                          center=True, length=n + 777, mode="mask")
        torch.testing.assert_close(audio, expected)
        audio.fill_(float("nan"))
        del audio
    _C.release_output_pool()
    assert _C.output_pool_bytes() == 0


def _output_of(mb):
    """A fused-op output of exactly `mb` MiB (one seed, mb * 64 channels of 64 x 64)."""
    return torch.ops.cnnaural.unpool_conv_transpose2d(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1, dtype=torch.long),
                                                      torch.ones(1, mb * 2 ** 18 // 4096, 1, 1), None, [64, 64],
                                                      [1, 1], [0, 0], [0, 0], [1, 1], True)


def test_a_smaller_output_reuses_a_kept_buffer_up_to_twice_its_size():
    """The last, smaller chunk of seeds of a call takes the buffer of the chunks before it instead
    of a new mapping beside it; a buffer more than twice the request stays kept."""
    from cnnaural_ext import _C

    _C.release_output_pool()
    out = _output_of(100)
    ptr = out.data_ptr()
    out.fill_(float("nan"))  # what a caller may leave in it
    del out
    small = _output_of(30)  # under half of 100: a new buffer
    assert small.data_ptr() != ptr and _C.output_pool_bytes() == 100 * 2 ** 20
    del small
    out = _output_of(60)  # the smallest kept buffer that fits: the 100 MiB one, with its own size
    assert out.data_ptr() == ptr and _C.output_pool_bytes() == 30 * 2 ** 20
    want = torch.zeros(out.shape)
    want[:, :, 0, 0] = 1.0  # the one switch's value through the 1 x 1 taps
    assert out.numel() * 4 == 60 * 2 ** 20 and torch.equal(out, want)
    del out
    assert _C.output_pool_bytes() == 130 * 2 ** 20  # back at 100 MiB, not 60
    _C.release_output_pool()


def test_a_deconvolution_leaves_no_more_than_the_between_calls_share_kept():
    import cnnaural_ext as ca
    from cnnaural_ext import _C

    torch.manual_seed(0)
    model = ca.models.paper_cnn5(n_classes=3, width=16, input_shape=(257, 160)).eval()
    dn = ca.DeconvNet(model, max_batch_bytes=16 * 2 ** 20)  # several chunks of seeds
    _C.release_output_pool()
    maps = dn.deconvolve(torch.rand(1, 1, 257, 160), 5, "all")
    assert maps.shape == (16, 1, 257, 160)
    assert _C.output_pool_bytes() <= _C.output_pool_keep_bytes
    assert _C.set_output_pool_limit(_C.output_pool_keep_bytes) == _C.output_pool_keep_bytes  # set back
    _C.release_output_pool()


def test_output_pool_is_bounded_and_can_be_turned_off():
    import subprocess
    import sys

    from cnnaural_ext import _C

    _C.release_output_pool()
    assert _C.output_pool_keep_bytes == 256 * 2 ** 20 and _C.output_pool_max_bytes == 2 ** 30
    for limit in (_C.output_pool_keep_bytes, _C.output_pool_max_bytes):
        with ops.output_pool_for_chunks() if limit > _C.output_pool_keep_bytes else contextlib.nullcontext():
            for mb in (100, 300, 400, 500, 150, 20, 40):  # freed at once: the oldest go when over the bound
                out = _output_of(mb)
                assert out.numel() * 4 == mb * 2 ** 20
                del out
                assert _C.output_pool_bytes() <= limit
            assert _C.output_pool_bytes() > (300 * 2 ** 20 if limit > _C.output_pool_keep_bytes else 0)
        assert 0 < _C.output_pool_bytes() <= _C.output_pool_keep_bytes  # trimmed on leaving
    _C.release_output_pool()
    code = ("import torch, cnnaural_ext; from cnnaural_ext import _C\n"
            "out = torch.ops.cnnaural.unpool_conv_transpose2d(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1, "
            "dtype=torch.long), torch.ones(1, 6400, 1, 1), None, [64, 64], [1, 1], [0, 0], [0, 0], [1, 1], True)\n"
            "del out\nprint(_C.output_pool_bytes())\n")
    env = dict(__import__("os").environ, CNNAURAL_OUTPUT_POOL="0")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "0"
