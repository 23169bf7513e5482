import numpy as np
import pytest
import torch
from PIL import Image

from microdreamer_core.errors import InputError
from microdreamer_core.io.animation import check_animation_output, save_animation

av = pytest.importorskip("av")


def _frames(n: int = 5, h: int = 33, w: int = 46) -> torch.Tensor:
    """``n`` flat colours, each frame its own (encoders keep frames that differ)."""
    colours = torch.linspace(0.1, 0.9, n)
    frames = torch.empty(n, h, w, 3)
    frames[..., 0], frames[..., 1], frames[..., 2] = colours[:, None, None], 0.5, 1.0 - colours[:, None, None]
    return frames


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_pillow_formats_loop_at_the_frame_rate(suffix, tmp_path):
    frames = _frames()
    path = save_animation(frames, tmp_path / f"spin{suffix}", fps=10)
    with Image.open(path) as im:
        assert im.format == suffix[1:].upper() and im.n_frames == 5 and im.size == (46, 33)
        assert im.info["loop"] == 0  # forever
        for i in (0, 4):
            im.seek(i)
            got = np.asarray(im.convert("RGB"), np.float32)[16, 20] / 255  # loads the frame and its info
            assert im.info["duration"] == 100
            assert np.abs(got - frames[i, 16, 20].numpy()).max() < 0.05, (i, got)
    assert [p.name for p in tmp_path.iterdir()] == [f"spin{suffix}"]  # no temporary file left


def test_mp4_is_h264_yuv420p_with_even_size(tmp_path):
    frames = _frames()
    save_animation((frames * 255).round().to(torch.uint8), tmp_path / "spin.mp4", fps=12)  # uint8 frames too
    with av.open(str(tmp_path / "spin.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name in ("h264", "mpeg4")
        assert stream.codec_context.pix_fmt == "yuv420p" and stream.average_rate == 12
    assert len(decoded) == 5 and decoded[0].shape == (34, 46, 3)  # 33 rows -> 34: the last one repeated
    for i in (0, 4):
        assert np.abs(decoded[i][16, 20] / 255 - frames[i, 16, 20].numpy()).max() < 0.05


def test_bad_requests_write_nothing(tmp_path):
    with pytest.raises(InputError, match=r"'spin.avi' is no animation file type: .*\.webp, \.gif or \.mp4"):
        save_animation(_frames(), tmp_path / "spin.avi")
    with pytest.raises(InputError, match="--turntable 'spin'"):
        check_animation_output(tmp_path / "spin", "--turntable")
    with pytest.raises(InputError, match="frame rate"):
        save_animation(_frames(), tmp_path / "spin.gif", fps=0)
    with pytest.raises(InputError, match=r"\(N, H, W, 3\)"):
        save_animation(torch.zeros(2, 8, 8, 4), tmp_path / "spin.webp")
    with pytest.raises(InputError, match="does not exist"):
        check_animation_output(tmp_path / "missing" / "spin.mp4", "--turntable")
    assert list(tmp_path.iterdir()) == []
