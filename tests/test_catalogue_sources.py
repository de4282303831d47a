"""catalogue.sources: the source walk, stable ids, output folders, shards, the manifest."""
import pytest

from cnnaural_ext.catalogue import parse_shard, read_manifest, shard_of, track_id, walk_source
from cnnaural_ext.catalogue.sources import write_manifest
from cnnaural_ext.errors import CnnauralError


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_walk_recursive_sorted_audio_only(tmp_path):
    for rel in ["b/intro.ogg", "a/intro.ogg", "a/intro.wav", "a/z/Song.MP3", "a/readme.txt", ".hidden/x.wav",
                "a/.x.wav", "c.flac"]:
        touch(tmp_path / rel)
    tracks = walk_source(tmp_path)
    assert [t.relative_path for t in tracks] == ["a/intro.ogg", "a/intro.wav", "a/z/Song.MP3", "b/intro.ogg", "c.flac"]
    # two intro.ogg in different folders: two tracks; a.ogg beside a.wav keep their extension as folders
    assert [t.folder for t in tracks] == ["a/intro_ogg", "a/intro_wav", "a/z/Song", "b/intro", "c"]
    assert len({t.id for t in tracks}) == 5
    assert tracks[3].id == track_id("b/intro.ogg")
    # the id is the relative path's: moving SRC keeps it
    (tmp_path / "moved").mkdir()
    for t in tracks:
        touch(tmp_path / "moved" / "root" / t.relative_path)
    assert [t.id for t in walk_source(tmp_path / "moved" / "root")] == [t.id for t in tracks]


def test_list_file_relative_absolute_and_outside(tmp_path):
    a = touch(tmp_path / "lists" / "music" / "a.wav")
    outside = touch(tmp_path / "elsewhere" / "b.flac")
    lst = tmp_path / "lists" / "tracks.txt"
    lst.write_text(f"# my catalogue\nmusic/a.wav\n\n{outside}\n")
    tracks = walk_source(lst)
    assert [t.path for t in tracks] == [str(outside), str(a)]  # sorted by relative path: "_root/..." first
    rels = {t.path: t.relative_path for t in tracks}
    assert rels[str(a)] == "music/a.wav"
    assert rels[str(outside)] == "_root/" + str(outside).lstrip("/")
    assert all(".." not in t.relative_path.split("/") for t in tracks)
    lst.write_text("music/missing.wav\n")
    with pytest.raises(CnnauralError, match="tracks.txt:1: file not found"):
        walk_source(lst)


def test_walk_errors(tmp_path):
    with pytest.raises(CnnauralError, match="SRC not found"):
        walk_source(tmp_path / "nope")
    touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(CnnauralError, match="no audio files"):
        walk_source(tmp_path / "empty")


def test_shards_partition_and_parse(tmp_path):
    ids = [track_id(f"x/{k}.wav") for k in range(300)]
    parts = [{i for i in ids if shard_of(i, 3) == s} for s in range(3)]
    assert sum(len(p) for p in parts) == 300 and set().union(*parts) == set(ids)
    assert all(len(p) > 50 for p in parts)
    assert parse_shard("1/3") == (1, 3)
    assert parse_shard(None, {}) == (0, 1)
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
    assert parse_shard(None, env) == (2, 4)
    for bad in ["3/3", "1", "a/b", "-1/2", "0/0"]:
        with pytest.raises(CnnauralError):
            parse_shard(bad)


def test_manifest_round_trip(tmp_path):
    touch(tmp_path / "src" / "a" / "t.wav", b"12345")
    touch(tmp_path / "src" / "b" / "t.wav", b"1")
    tracks = walk_source(tmp_path / "src")
    write_manifest(tmp_path / "out", tracks, 2)
    rows = read_manifest(tmp_path / "out")
    assert [r["relative_path"] for r in rows] == ["a/t.wav", "b/t.wav"]
    assert [r["size"] for r in rows] == [5, 1]
    assert [r["shard"] for r in rows] == [shard_of(t.id, 2) for t in tracks]
    assert {r["n_shards"] for r in rows} == {2}
    assert rows[0]["mtime"] == pytest.approx(tracks[0].mtime)
