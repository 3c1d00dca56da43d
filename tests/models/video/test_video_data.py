"""Data generation: labels follow how each clip was made; encodes are deterministic and decode as expected."""

import numpy as np
import pytest

from models.video import data as D
from models.video.decode import read_all


def by_name(name):
    return next(e for e in D.ENCODES if e.name == name)


PLAIN, TEXTURED = D.SOURCES[0], next(s for s in D.SOURCES if s.textured_slow)


@pytest.mark.parametrize("ladder", sorted(D.LADDERS))
@pytest.mark.parametrize("artifact", ["blurring", "blocking", "ringing", "bleeding"])
def test_levels_never_fall_along_a_qp_ladder(ladder, artifact):
    levels = [by_name(n).levels(PLAIN)[artifact] for n in D.LADDERS[ladder]]
    assert all(b >= a for a, b in zip(levels, levels[1:])), (ladder, artifact, levels)
    assert levels[-1] > levels[0] or artifact == "bleeding"


def test_paired_settings():
    assert by_name("x264_nodb_qp44").levels(PLAIN)["blocking"] > by_name("x264_qp44").levels(PLAIN)["blocking"]
    assert by_name("x264_nodb_qp36").levels(PLAIN)["blocking"] > by_name("x264_qp36").levels(PLAIN)["blocking"]
    assert by_name("x264_chroma_qp32").levels(PLAIN)["bleeding"] > max(e.levels(PLAIN)["bleeding"] for e in D.ENCODES if not e.chroma_offset)
    assert by_name("x264_flicker_20_44").levels(PLAIN)["flickering"] > by_name("x264_flicker_26_38").levels(PLAIN)["flickering"] > 0
    assert all(e.levels(PLAIN)["flickering"] == 0 for e in D.ENCODES if not e.zones)
    # floating only on slow pans of textured sources, and only with long GOPs at high QP
    assert all(e.levels(PLAIN)["floating"] == 0 for e in D.ENCODES)
    assert by_name("x264_qp44").levels(TEXTURED)["floating"] > by_name("x264_qp36").levels(TEXTURED)["floating"] > 0
    assert by_name("x264_flicker_20_44").levels(TEXTURED)["floating"] == 0


def test_zone_encode_alternates_qp_every_4_frames():
    e = by_name("x264_flicker_20_44")
    assert [e.frame_q(t) for t in range(12)] == [20] * 4 + [44] * 4 + [20] * 4
    assert "keyint=4:min-keyint=4:scenecut=0:bframes=0" in " ".join(e.ffmpeg_args())


def test_sources_are_disjoint_and_split():
    splits = {s.name: s.split for s in D.SOURCES}
    assert len(splits) == len(D.SOURCES)
    assert {"train", "val"} == set(splits.values())  # the test set is fresh.py's, sources of its own
    assert any(s.kind == "clip" and s.split == "train" for s in D.SOURCES)


def test_source_frames_are_deterministic():
    src = next(s for s in D.SOURCES if s.name == "camera")
    a, b = D.source_frames(src), D.source_frames(src)
    assert a.shape == (D.FRAMES, D.SIZE, D.SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a[1].astype(int) - a[0]).mean() > 1  # it pans


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc")
    src = next(s for s in D.SOURCES if s.name == "astronaut")
    rgb = D.source_frames(src)
    yuv = folder / "src.yuv"
    yuv.write_bytes(b"".join(D._rgb_to_yuv420(f).tobytes() for f in rgb))
    ref_path = folder / "ref.mkv"
    D.encode(yuv, D.Encode("lossless", "x264", 0, "mkv"), ref_path)
    return src, folder, yuv, read_all(ref_path)


def test_labels_rise_with_qp_and_vanish_when_lossless(small_clip):
    src, folder, yuv, ref = small_clip
    means = []
    for name in ("x264_qp18", "x264_qp44"):
        e = by_name(name)
        D.encode(yuv, e, folder / f"{name}.mp4")
        dec = read_all(folder / f"{name}.mp4")
        assert dec[0].shape == (D.FRAMES, D.SIZE, D.SIZE)
        blocks, clip = D.labels_for(e, src, ref, dec)
        assert blocks.shape == (D.FRAMES, 4, D.SIZE // 16, D.SIZE // 16)
        means.append(blocks.astype(float).mean((0, 2, 3)))
    assert means[1][0] > means[0][0] + 0.2  # blurring
    assert means[1][3] > means[0][3]        # ringing
    blocks, _ = D.labels_for(by_name("x264_qp44"), src, ref, ref)  # decoded == source: nothing visible
    assert float(blocks.astype(float).max()) == 0.0


def test_encodes_are_deterministic(small_clip):
    _, folder, yuv, _ = small_clip
    e = by_name("mpeg2_q14")
    D.encode(yuv, e, folder / "a.mkv"), D.encode(yuv, e, folder / "b.mkv")
    assert np.array_equal(read_all(folder / "a.mkv")[0], read_all(folder / "b.mkv")[0])


def test_flicker_encode_really_alternates_quality(small_clip):
    """The spliced GOPs decode as one stream and fine detail swings with the GOP's QP."""
    from models.video.pipeline import hf_blocks

    src, folder, yuv, ref = small_clip
    e = by_name("x264_flicker_20_44")
    D.encode(yuv, e, folder / "flicker.mkv")
    y = read_all(folder / "flicker.mkv")[0]
    assert y.shape[0] == D.FRAMES
    detail = np.array([hf_blocks(f).mean() for f in y])
    low_qp = np.array([e.frame_q(t) == 20 for t in range(D.FRAMES)])
    assert detail[low_qp].mean() > detail[~low_qp].mean() + 0.05
    blocks, clip = D.labels_for(e, src, ref, read_all(folder / "flicker.mkv"))
    assert clip[0] == 1.0 and blocks[4:8].astype(float).mean() > blocks[0:4].astype(float).mean()


def test_anchors_on_a_clip_with_nothing_to_measure(tmp_path):
    """A flat grey clip: blurdetect finds no edges ("-nan") and blockdetect no texture; the anchors are still read
    (as nan / inf) instead of failing the data build, and VMAF against itself is ~100."""
    yuv = tmp_path / "flat.yuv"
    yuv.write_bytes(np.full((D.FRAMES, D.SIZE * 3 // 2, D.SIZE), 128, np.uint8).tobytes())
    D.encode(yuv, by_name("x264_qp44"), tmp_path / "flat.mp4")
    a = D.anchors(tmp_path / "flat.mp4", yuv)
    assert set(a) == {"vmaf", "blockdetect", "blurdetect"} and a["vmaf"] > 95
    assert not np.isfinite(a["blurdetect"]) or not np.isfinite(a["blockdetect"])
