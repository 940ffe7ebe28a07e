"""Damaged and unreadable bags: chunk CRCs written and checked, damaged spans skipped and reported,
the scan resynchronised, unreadable inputs named.

The reference for the MCAP layout and CRCs is foxglove's ``mcap`` Python library (the format's
own reader): it validates the CRCs our writer stores and gives the chunk offsets and time ranges
the damage tests use to predict which frames a damaged chunk takes with it.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, DataEnd
from mcap.stream_reader import StreamReader

from seg_perception.bag.read import BagError, ReadStats, deserialize, list_topics, read_images
from seg_perception.bag.write import BagWriter

T0 = 1_700_000_000_000_000_000
DT = 50_000_000
H, W = 96, 128  # ~37 KB per image + 12 KB GT: about 21 frames per 1 MiB chunk
N = 90


def _classes(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 19, (H, W)).astype(np.uint8)


def _write(path: Path, storage: str = "mcap", compression=None, n: int = N) -> Path:
    """Images whose R channel is the class map a FakeSegmenter predicts; GT differs in a few pixels."""
    with BagWriter(path, storage=storage, compression=compression) as bag:
        for i in range(n):
            cls = _classes(i)
            rgb = np.stack([cls, np.zeros_like(cls), np.full_like(cls, i % 256)], axis=-1)
            gt = cls.copy()
            gt[: i % 7 + 1, :3] = 0
            bag.write_image("/cam", rgb, "rgb8", T0 + i * DT, "camera")
            bag.write_image("/gt/semantic", gt, "mono8", T0 + i * DT, "camera")
    return path


def _mcap_file(bag: Path) -> Path:
    return bag if bag.suffix == ".mcap" else next(bag.glob("*.mcap"))


def _chunks(path: Path) -> list:
    """Chunk indexes (offset, length, time range) from the reference reader."""
    with path.open("rb") as f:
        return list(make_reader(f).get_summary().chunk_indexes)


def _cam_times(path: Path) -> list[tuple[object, set[int]]]:
    """(chunk index, log times of its /cam messages) per chunk, from the reference reader."""
    from mcap.records import Channel, Message
    from mcap.stream_reader import breakup_chunk

    with path.open("rb") as f:
        chunks = [r for r in StreamReader(f, emit_chunks=True).records if isinstance(r, Chunk)]
    out, cam = [], set()
    for index, chunk in zip(_chunks(path), chunks):
        records = breakup_chunk(chunk)
        cam |= {r.id for r in records if isinstance(r, Channel) and r.topic == "/cam"}
        out.append((index, {r.log_time for r in records if isinstance(r, Message) and r.channel_id in cam}))
    assert len(out) == len(chunks)
    return out


def _frames(bag, stats=None) -> dict[int, bytes]:
    return {f.stamp_ns: bytes(np.asarray(f.msg.data)) for f in read_images(bag, "/cam", stats=stats)}


@pytest.fixture(scope="module")
def intact(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("intact") / "bag")


# ------------------------------------------------------------------------------- CRCs written
@pytest.mark.parametrize("compression", [None, "zstd"])
@pytest.mark.parametrize("single_file", [False, True])
def test_written_bags_carry_crcs_the_reference_reader_validates(tmp_path, compression, single_file):
    bag = _write(tmp_path / ("b.mcap" if single_file else "b"), compression=compression, n=30)
    path = _mcap_file(bag)
    with path.open("rb") as f:
        list(StreamReader(f, validate_crcs=True).records)  # raises on a chunk or data section CRC mismatch
    with path.open("rb") as f:
        records = list(StreamReader(f, emit_chunks=True).records)
    chunks = [r for r in records if isinstance(r, Chunk)]
    assert len(chunks) >= 2 and all(c.uncompressed_crc != 0 for c in chunks)
    (data_end,) = [r for r in records if isinstance(r, DataEnd)]
    assert data_end.data_section_crc != 0
    with path.open("rb") as f:
        ref = [(ch.topic, m.log_time, bytes(deserialize(m.data, "sensor_msgs/msg/Image").data))
               for _s, ch, m in make_reader(f, validate_crcs=True).iter_messages()]
    assert len(ref) == 60
    ours = [("/cam", f.log_time_ns, bytes(np.asarray(f.msg.data))) for f in read_images(bag, "/cam")]
    assert ours == [(t, lt, d) for t, lt, d in ref if t == "/cam"]


def test_tolerant_scan_reads_what_the_reference_reader_reads(intact):
    from seg_perception.bag.recover import McapScan

    path = _mcap_file(intact)
    scan = McapScan(path)
    try:
        ours = [(t, lt) for t, _m, lt, _d in scan._scan()]
        assert not scan.damaged and scan.chunks_without_crc == 0
    finally:
        scan.close()
    with path.open("rb") as f:
        ref = [(ch.topic, m.log_time) for _s, ch, m in make_reader(f).iter_messages(log_time_order=False)]
    assert ours == ref


# ------------------------------------------------------------------------------- flipped bits
def _flip(src: Path, dst: Path, seed: int, bits: int = 32) -> list[int]:
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    where = sorted(int(p) for p in rng.integers(int(len(data) * 0.35), int(len(data) * 0.65), bits))
    for p in where:
        data[p] ^= 1 << int(rng.integers(0, 8))
    dst.write_bytes(bytes(data))
    return where


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flipped_bits_never_alter_frames_and_cost_only_their_chunks(intact, tmp_path, seed):
    """#28: 32 flipped bits in the middle of a bag. Every frame read is byte-identical to the intact
    bag's; exactly the frames of the chunks holding a flipped bit are missing, and each such chunk is
    reported as a damaged span at its offset."""
    bag = tmp_path / "bag"
    shutil.copytree(intact, bag)
    path = _mcap_file(bag)
    flips = _flip(_mcap_file(intact), path, seed)
    good = _frames(intact)
    stats = ReadStats()
    got = _frames(bag, stats)
    assert all(got[t] == good[t] for t in got), "a frame was altered"
    hit = [(c, times) for c, times in _cam_times(_mcap_file(intact))
           if any(c.chunk_start_offset <= p < c.chunk_start_offset + c.chunk_length for p in flips)]
    assert hit, "the flips should land in chunks"
    lost = set().union(*(times for _c, times in hit))
    hit = [c for c, _t in hit]
    assert set(good) - set(got) == lost
    spans = {(d.start, d.reason) for d in stats.damaged}
    assert {c.chunk_start_offset for c in hit} <= {s for s, _ in spans}, spans
    assert all(r in ("crc_mismatch", "bad_record", "decompress_failed", "size_mismatch") for _, r in spans)


def test_bad_record_length_resynchronises_at_the_next_chunk(intact, tmp_path):
    """#28: one bad record length ended the whole tolerant scan. Here the footer is cut (rosbags
    cannot open the file, so the scan runs) and the second chunk's length is garbage."""
    data = bytearray(_mcap_file(intact).read_bytes())
    chunks = _chunks(_mcap_file(intact))
    second, second_cam = chunks[1], _cam_times(_mcap_file(intact))[1][1]
    data[second.chunk_start_offset + 1:second.chunk_start_offset + 9] = (1 << 50).to_bytes(8, "little")
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(bytes(data[: chunks[-1].chunk_start_offset + chunks[-1].chunk_length]))
    stats = ReadStats()
    got = _frames(cut, stats)
    good = _frames(intact)
    lost = second_cam
    assert set(good) - set(got) == lost and all(got[t] == good[t] for t in got)
    (span,) = [d for d in stats.damaged if d.reason == "bad_record"]
    assert span.start == second.chunk_start_offset and span.end == chunks[2].chunk_start_offset
    assert any(s.recovered for s in stats.stops)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_corrupt_lengths_cost_only_their_chunk(intact, tmp_path, seed):
    """Random garbage in the length field of a random chunk and of the message index record after
    another chunk, footer cut so the linear scan runs: only the first chunk's frames are lost."""
    rng = np.random.default_rng(seed)
    data = bytearray(_mcap_file(intact).read_bytes())
    per_chunk = _cam_times(_mcap_file(intact))
    k = int(rng.integers(0, len(per_chunk) - 1))
    chunk = per_chunk[k][0]
    at = chunk.chunk_start_offset
    data[at + 1:at + 9] = int(rng.integers(0, 1 << 62)).to_bytes(8, "little")
    other = per_chunk[(k + 1) % (len(per_chunk) - 1)][0]  # a different chunk, not the last one
    after = other.chunk_start_offset + other.chunk_length  # its first message index record
    assert data[after] == 0x07 and other is not chunk
    # beyond the file, or (odd seeds) inside it: a length that lands on valid later chunks
    bad = int(rng.integers(1 << 20, 1 << 62)) if seed % 2 == 0 else int(rng.integers(50_000, 2_000_000))
    data[after + 1:after + 9] = bad.to_bytes(8, "little")
    last = per_chunk[-1][0]
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(bytes(data[: last.chunk_start_offset + last.chunk_length]))
    stats = ReadStats()
    got, good = _frames(cut, stats), _frames(intact)
    assert all(got[t] == good[t] for t in got)
    assert set(good) - set(got) == per_chunk[k][1]
    assert at in {d.start for d in stats.damaged}


def test_damaged_first_chunk_holding_the_channel_records(intact, tmp_path):
    """The writer puts the schema and channel records into the first chunk; when that chunk is
    damaged, the (CRC-checked) summary still tells which topic the later messages belong to."""
    bag = tmp_path / "bag"
    shutil.copytree(intact, bag)
    path = _mcap_file(bag)
    per_chunk = _cam_times(path)
    first = per_chunk[0][0]
    data = bytearray(path.read_bytes())
    data[first.chunk_start_offset + first.chunk_length // 2] ^= 0x10
    path.write_bytes(bytes(data))
    stats = ReadStats()
    got, good = _frames(bag, stats), _frames(intact)
    assert all(got[t] == good[t] for t in got)
    assert set(good) - set(got) == per_chunk[0][1]
    assert [(d.start, d.reason) for d in stats.damaged] == [(first.chunk_start_offset, "crc_mismatch")]


def test_damaged_summary_is_not_trusted(intact, tmp_path):
    """A flipped bit in the summary (channel records, chunk index) is caught by the summary CRC and
    the data section is read by the checked linear scan instead."""
    bag = tmp_path / "bag"
    shutil.copytree(intact, bag)
    path = _mcap_file(bag)
    data = bytearray(path.read_bytes())
    last = _chunks(path)[-1]
    start = data.rindex(b"/gt/semantic")  # the last copy of a channel record: in the summary section
    assert start > last.chunk_start_offset + last.chunk_length
    data[start + 3] ^= 0x08
    path.write_bytes(bytes(data))
    stats = ReadStats()
    assert _frames(bag, stats) == _frames(intact)
    assert [d.reason for d in stats.damaged] == ["summary_crc_mismatch"]


# --------------------------------------------------------------------- evaluation and the CLI
def _evaluate(bag, out, scene):
    from seg_perception.eval.evaluate import evaluate_bags

    evaluate_bags([bag], segmenter=scene.FakeSegmenter(task="semantic"), image_topic="/cam",
                  gt_semantic_topic="/gt/semantic", out_dir=out, progress=False, figures=False)
    return json.loads((out / "report.json").read_text())


def test_evaluation_of_intact_chunks_equals_the_intact_bag(intact, tmp_path, scene):
    bag = tmp_path / "bag"
    shutil.copytree(intact, bag)
    _flip(_mcap_file(intact), _mcap_file(bag), seed=5)
    ref = {r["stamp_ns"]: r for r in _evaluate(intact, tmp_path / "ref", scene)["per_frame"]}
    report = _evaluate(bag, tmp_path / "dmg", scene)
    got = report["per_frame"]
    assert 0 < len(got) < len(ref)
    bookkeeping = ("bag", "index", "latency_ms")  # where and how fast, not what was evaluated
    for r in got:
        if not r["gt"]:  # its ground truth message was in a damaged chunk
            continue
        want = ref[r["stamp_ns"]]
        assert {k: v for k, v in r.items() if k not in bookkeeping} == \
            {k: v for k, v in want.items() if k not in bookkeeping}
    damaged = report["reading"]["damaged"]
    assert damaged and all({"start", "end", "reason", "storage"} <= set(d) for d in damaged)
    md = (tmp_path / "dmg" / "report.md").read_text()
    for d in damaged:
        assert str(d["start"]) in md and d["reason"] in md


def _parse(argv):
    from seg_perception.cli import eval_bag

    p = argparse.ArgumentParser()
    eval_bag.configure_parser(p)
    return eval_bag, p.parse_args([str(a) for a in argv])


@pytest.mark.parametrize("seed", [7, 8])
def test_eval_bag_cli_lists_every_skipped_span(intact, tmp_path, seed, capsys):
    bag = tmp_path / "bag"
    shutil.copytree(intact, bag)
    _flip(_mcap_file(intact), _mcap_file(bag), seed)
    expected = ReadStats()
    _frames(bag, expected)
    cmd, args = _parse([bag, "--model", "deeplabv3plus_mobilenetv2", "--weights", "none", "--image-topic", "/cam",
                        "--gt-semantic-topic", "/gt/semantic", "--out", tmp_path / "out", "--resolution", "32x64",
                        "--no-progress", "--no-figures"])
    assert cmd.run(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    spans = [(d["start"], d["end"], d["reason"]) for d in report["reading"]["damaged"]]
    assert spans and spans == [(d.start, d.end, d.reason) for d in expected.damaged]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Damaged byte spans" in md and all(str(s) in md for s, _e, _r in spans)


# ------------------------------------------------------------------------------ unreadable inputs
@pytest.mark.parametrize("name,content,needle", [
    ("bag.db3", b"this is not a database, just text " * 10, "not an SQLite database"),
    ("bag.db3", b"", "not an SQLite database"),
    ("bag.mcap", b"", "is empty"),
    ("bag.mcap", b"PK\x03\x04 a zip file, not mcap" * 4, "not an MCAP file"),
])
def test_unreadable_inputs_say_why(tmp_path, name, content, needle, capsys):
    path = tmp_path / name
    path.write_bytes(content)
    for call in (lambda: list_topics(path), lambda: list(read_images(path, "/cam"))):
        with pytest.raises(BagError) as e:
            call()
        assert needle in str(e.value) and "topic" not in str(e.value), str(e.value)
    cmd, args = _parse([path, "--model", "deeplabv3plus_mobilenetv2", "--weights", "none", "--image-topic", "/cam",
                        "--out", tmp_path / "out", "--resolution", "32x64", "--no-progress"])
    assert cmd.run(args) == 2
    printed = capsys.readouterr()
    assert needle in printed.out + printed.err
