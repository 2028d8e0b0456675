"""The compiled reader against a plain-NumPy decoder, and every way its input can be wrong."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import encoded_images, reference_decode, write_records

from ltfast import RecordReader


def nhwc(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 2, 3, 1)


def test_decodes_every_byte_of_several_files_in_order(cifar10_files):
    reader = RecordReader(cifar10_files)
    labels, images = reference_decode(cifar10_files, 1)
    assert len(reader) == 88
    np.testing.assert_array_equal(reader.labels, labels[:, 0])
    assert reader.labels.dtype == np.int64
    np.testing.assert_array_equal(reader.decode(), images)
    np.testing.assert_array_equal(reader.decode(layout="NHWC"), nhwc(images))
    # The encoding itself: bytes 0..2 of each image spell its global record index.
    flat = reader.decode().reshape(88, -1).astype(np.int64)
    np.testing.assert_array_equal(flat[:, 0] + 256 * flat[:, 1], np.arange(88))


def test_cifar100_fine_and_coarse_labels(cifar100_file):
    reader = RecordReader([cifar100_file], label_bytes=2)
    labels, images = reference_decode([cifar100_file], 2)
    assert reader.record_size == 3074
    np.testing.assert_array_equal(reader.coarse_labels, labels[:, 0])
    np.testing.assert_array_equal(reader.labels, labels[:, 1])
    np.testing.assert_array_equal(reader.decode(layout="NHWC"), nhwc(images))


def test_cifar10_has_no_coarse_labels(cifar10_files):
    with pytest.raises(AttributeError, match="no coarse label"):
        _ = RecordReader(cifar10_files[0]).coarse_labels


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gather_with_repeats_any_order_into_reused_buffer(cifar10_files, layout):
    reader = RecordReader(cifar10_files)
    _, images = reference_decode(cifar10_files, 1)
    expected = images if layout == "NCHW" else nhwc(images)
    rng = np.random.default_rng(0)
    out = np.zeros((64, *expected.shape[1:]), np.uint8)
    for _ in range(5):
        indices = rng.integers(0, len(reader), 64)
        indices[:3] = indices[3]  # repeats
        result = reader.decode(indices, layout=layout, out=out)
        assert result is out
        np.testing.assert_array_equal(out, expected[indices])


def test_accepts_any_integer_index_sequence(cifar10_files):
    reader = RecordReader(cifar10_files)
    _, images = reference_decode(cifar10_files, 1)
    for indices in (
        [5, 0, 87],
        np.array([5, 0, 87], np.int32),
        np.array([5, 0, 87], np.uint16),
        torch.tensor([5, 0, 87]),
    ):
        np.testing.assert_array_equal(reader.decode(indices), images[[5, 0, 87]])
    assert reader.decode([]).shape == (0, 3, 32, 32)
    assert reader.decode(np.array([], np.int64), layout="NHWC").shape == (0, 32, 32, 3)


def test_thread_count_never_changes_the_bytes(tmp_path):
    count = 3000  # 9 MB: large enough for several threads
    labels = np.arange(count) % 10
    path = write_records(tmp_path / "big.bin", [labels], encoded_images(0, count))
    reader = RecordReader(path)
    indices = np.random.default_rng(1).permutation(count)
    for layout in ("NCHW", "NHWC"):
        single = reader.decode(indices, layout=layout, threads=1)
        for threads in (2, 3, 4, 0):
            np.testing.assert_array_equal(
                reader.decode(indices, layout=layout, threads=threads), single
            )


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_large_outputs_take_the_threaded_streaming_path_and_stay_exact(tmp_path, layout):
    # Outputs of 16 MiB and more are written by several threads with streaming stores.
    count = 6000  # 18.4 MB of pixels
    labels = np.arange(count) % 10
    path = write_records(tmp_path / "large.bin", [labels], encoded_images(0, count))
    reader = RecordReader(path)
    _, images = reference_decode([path], 1)
    expected = images if layout == "NCHW" else nhwc(images)
    for threads in (0, 1, 3):
        np.testing.assert_array_equal(reader.decode(layout=layout, threads=threads), expected)
    order = np.random.default_rng(2).permutation(count)
    out = np.empty(expected.shape, np.uint8)
    np.testing.assert_array_equal(reader.decode(order, layout=layout, out=out), expected[order])


def test_torch_shares_the_decoded_array(cifar10_files):
    images = RecordReader(cifar10_files).decode()
    tensor = torch.from_numpy(images)
    images[0, 0, 0, 0] = 123
    assert tensor[0, 0, 0, 0] == 123


def test_pickles_by_reopening_its_files(cifar10_files):
    reader = RecordReader(cifar10_files)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.paths == [str(p) for p in cifar10_files]
    np.testing.assert_array_equal(clone.decode(), reader.decode())
    assert "88 records" in repr(clone)


class ReaderDataset(torch.utils.data.Dataset):
    def __init__(self, reader: RecordReader):
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.reader.decode([index])[0])


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_dataloader_workers_read_the_same_bytes(cifar10_files, start_method):
    reader = RecordReader(cifar10_files)
    loader = torch.utils.data.DataLoader(
        ReaderDataset(reader),
        batch_size=16,
        num_workers=2,
        multiprocessing_context=multiprocessing.get_context(start_method),
    )
    np.testing.assert_array_equal(torch.cat(list(loader)).numpy(), reader.decode())


# ----- bad files ---------------------------------------------------------------------------


def test_missing_file_raises_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "data_batch_9.bin"
    with pytest.raises(FileNotFoundError) as error:
        RecordReader([missing])
    assert error.value.filename == str(missing)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path} is a directory"):
        RecordReader([tmp_path])


def test_empty_file_is_rejected(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.touch()
    with pytest.raises(ValueError, match=r"empty\.bin is empty"):
        RecordReader([empty])


def test_truncated_file_names_file_size_and_record_size(tmp_path):
    path = write_records(tmp_path / "cut.bin", [[1, 2]], encoded_images(0, 2))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"cut.bin has 6141 bytes.*3073-byte CIFAR-10 record"):
        RecordReader([path])


def test_size_of_the_other_format_is_named(cifar10_files, cifar100_file):
    with pytest.raises(ValueError, match="3074-byte CIFAR-100 record: open it with label_bytes=2"):
        RecordReader([cifar100_file])
    with pytest.raises(ValueError, match="3073-byte CIFAR-10 record: open it with label_bytes=1"):
        RecordReader(cifar10_files, label_bytes=2)


@pytest.mark.parametrize(
    ("labels", "label_bytes", "message"),
    [
        ([[3, 10]], 1, "record 1 has label 10, expected 0..9"),
        ([[19, 0], [99, 100]], 2, "record 1 has fine label 100, expected 0..99"),
        ([[0, 20], [5, 5]], 2, "record 1 has coarse label 20, expected 0..19"),
    ],
)
def test_out_of_range_label_names_file_record_and_value(tmp_path, labels, label_bytes, message):
    path = write_records(tmp_path / "bad.bin", labels, encoded_images(0, 2))
    with pytest.raises(ValueError, match=f"bad.bin: {message}"):
        RecordReader([path], label_bytes=label_bytes)


def test_bad_constructor_arguments(cifar10_files):
    with pytest.raises(ValueError, match=r"label_bytes must be 1 .* or 2"):
        RecordReader(cifar10_files, label_bytes=3)
    with pytest.raises(ValueError, match="at least one file"):
        RecordReader([])
    with pytest.raises(ValueError, match="path 1 of 1 is empty; expected a CIFAR binary file"):
        RecordReader("")
    with pytest.raises(ValueError, match="path 2 of 2 is empty"):
        RecordReader([cifar10_files[0], ""])


# ----- files changed after opening, readers never opened -----------------------------------


def aged(path: Path) -> Path:
    """`path` with a modification time in the past, like data downloaded long ago."""
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


@pytest.mark.parametrize("threads", [1, 2])
def test_a_file_truncated_after_opening_raises_oserror_naming_it(cifar10_files, threads):
    reader = RecordReader([aged(p) for p in cifar10_files])
    os.truncate(cifar10_files[1], 3073 * 2)  # reading past the new end would be SIGBUS
    with pytest.raises(OSError, match=r"changed size from 52241 to 6146 bytes after it") as error:
        reader.decode(threads=threads)
    assert error.value.errno == errno.ESTALE and error.value.filename == str(cifar10_files[1])
    with pytest.raises(OSError, match="open the dataset"):
        reader.decode([0])  # every call checks every file: the next batch is refused too


TRUNCATE_DURING_COPIES = """
import os, sys, threading, time
import numpy as np
from _ltfast import RecordReader

path, most_trials = sys.argv[1], 40
raw = open(path, "rb").read()
stamp = os.stat(path)
reader = RecordReader(path)
expected = reader.decode()


def copy_seconds():
    start = time.perf_counter()
    reader.decode(threads=2)
    return time.perf_counter() - start


# The fastest of a few copies: on a loaded machine a copy only takes longer than this, so a
# cut after a fraction of it lands inside the copy (or before it, which the size check sees).
took = min(copy_seconds() for _ in range(3))
rng = np.random.default_rng(0)
bus_errors = trials = 0
while trials < most_trials and bus_errors == 0:
    trials += 1
    with open(path, "r+b") as file:
        file.write(raw)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the check passes again
    result = {}

    def work():
        try:
            result["equal"] = np.array_equal(reader.decode(threads=2), expected)
        except OSError as error:
            result["error"] = error

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(rng.uniform(0.1, 0.5) * took)  # inside the copy
    os.truncate(path, 3073 * 10)
    worker.join()
    if "error" in result:
        assert result["error"].filename == path, result["error"]
        bus_errors += "bus error" in str(result["error"])
    else:
        assert result["equal"]
print("bus errors caught:", bus_errors, "of", trials)
"""


def test_a_file_truncated_during_a_copy_raises_instead_of_killing_the_process(tmp_path):
    # The size check runs before each copy; another process can still cut the file in the
    # middle of one, which raises SIGBUS. Run where a crash cannot take pytest down.
    count = 20000  # 61 MB: a copy of tens of milliseconds to truncate in the middle of
    path = write_records(tmp_path / "big.bin", [np.arange(count) % 10], encoded_images(0, count))
    result = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", TRUNCATE_DURING_COPIES, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    caught = int(result.stdout.split("bus errors caught:")[1].split()[0])
    assert caught >= 1, result.stdout  # the guard, not only the check, was exercised


def test_a_file_truncated_under_a_dataloader_worker_is_named(cifar10_files):
    reader = RecordReader([aged(p) for p in cifar10_files])
    loader = torch.utils.data.DataLoader(ReaderDataset(reader), batch_size=16, num_workers=1)
    os.truncate(cifar10_files[0], 3073)
    with pytest.raises(OSError, match=f"{cifar10_files[0].name} changed size"):
        list(loader)


def test_a_file_rewritten_in_place_is_refused(cifar10_files):
    reader = RecordReader([aged(p) for p in cifar10_files])
    raw = bytearray(cifar10_files[2].read_bytes())
    raw[3073 * 4 + 100] ^= 0xFF  # one pixel of record 4: same size, new modification time
    cifar10_files[2].write_bytes(raw)
    with pytest.raises(OSError, match="was rewritten"):
        reader.decode([60])


def test_a_rewrite_that_keeps_size_and_time_is_caught_by_the_labels(cifar10_files):
    path = cifar10_files[0]
    reader = RecordReader(cifar10_files)
    stamp = path.stat()
    raw = bytearray(path.read_bytes())
    raw[3073 * 7] = (raw[3073 * 7] + 1) % 10  # record 7 now claims another class
    path.write_bytes(raw)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # hides the write from fstat
    np.testing.assert_array_equal(reader.decode([6]), reference_decode([path], 1)[1][[6]])
    for threads in (1, 2):
        with pytest.raises(OSError, match=r"record 7 no longer has the label read when"):
            reader.decode(np.arange(88), threads=threads)


def test_a_reader_that_was_never_opened_raises_instead_of_reading_garbage(cifar10_files):
    blank = RecordReader.__new__(RecordReader)
    assert repr(blank) == "RecordReader(not opened)"
    for use in (len, lambda r: r.decode([0]), lambda r: r.labels, lambda r: r.paths):
        with pytest.raises(ValueError, match="never opened"):
            use(blank)
    failed = RecordReader.__new__(RecordReader)
    with pytest.raises(FileNotFoundError):
        failed.__setstate__(([str(cifar10_files[0].with_name("gone.bin"))], 1))
    with pytest.raises(ValueError, match="never opened"):
        failed.decode()
    with pytest.raises(ValueError, match="never opened"):
        pickle.dumps(failed)


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "data_batch_1.bin"
    os.mkfifo(fifo)
    # Opening a FIFO for reading waits for a writer: run it where a hang cannot stall pytest.
    code = f"from _ltfast import RecordReader\nRecordReader({str(fifo)!r})"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "is a FIFO (named pipe); expected a CIFAR .bin file" in result.stderr


# ----- bad arguments -----------------------------------------------------------------------


@pytest.mark.parametrize("index", [88, -1, 2**40])
def test_out_of_range_index_is_named(cifar10_files, index):
    reader = RecordReader(cifar10_files)
    with pytest.raises(IndexError, match=f"index {index} at position 1 is out of range for 88"):
        reader.decode([0, index, 1])


@pytest.mark.parametrize("index", [88, 2**63, 2**64 - 1])
def test_uint64_indices_are_named_with_their_true_value(cifar10_files, index):
    reader = RecordReader(cifar10_files)
    with pytest.raises(IndexError, match=f"index {index} at position 1 is out of range for 88"):
        reader.decode(np.array([0, index], dtype=np.uint64))
    np.testing.assert_array_equal(reader.decode(np.array([3, 1], np.uint64)), reader.decode([3, 1]))


def test_bad_indices_and_layout(cifar10_files):
    reader = RecordReader(cifar10_files)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        reader.decode(threads=-1)
    with pytest.raises(TypeError, match="indices must be integers, got dtype float64"):
        reader.decode([0.0, 1.0])
    with pytest.raises(ValueError, match=r"1-D array, got shape \(2, 2\)"):
        reader.decode([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="layout must be 'NCHW' or 'NHWC', got 'CHW'"):
        reader.decode(layout="CHW")


def test_out_buffer_is_checked_never_converted(cifar10_files):
    reader = RecordReader(cifar10_files)
    indices = [0, 1]
    with pytest.raises(TypeError, match="dtype uint8, got float32"):
        reader.decode(indices, out=np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"shape \(2, 32, 32, 3\), expected \(2, 3, 32, 32\)"):
        reader.decode(indices, out=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        reader.decode(indices, out=np.zeros((2, 32, 32, 3), np.uint8).transpose(0, 3, 1, 2))
    read_only = np.zeros((2, 3, 32, 32), np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        reader.decode(indices, out=read_only)
    with pytest.raises(
        TypeError, match=r"numpy.ndarray \(for a torch tensor pass tensor.numpy\(\)\)"
    ):
        reader.decode(indices, out=torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_fuzz_random_files_and_indices_never_crash(tmp_path):
    """Random sizes, bytes and indices: every outcome is a correct decode or a clean error."""
    rng = np.random.default_rng(2024)
    for trial in range(150):
        label_bytes = int(rng.integers(1, 3))
        record = 3072 + label_bytes
        size = int(rng.choice([rng.integers(0, 4 * record), record * rng.integers(1, 5)]))
        data = rng.integers(0, 256, size, dtype=np.uint8)
        if rng.random() < 0.5 and size:  # mostly valid labels, so decoding gets exercised
            labels = data[: size - size % record].reshape(-1, record)[:, :label_bytes]
            labels %= 10
        path = tmp_path / f"fuzz_{trial}.bin"
        data.tofile(path)
        try:
            reader = RecordReader([path], label_bytes=label_bytes)
        except ValueError:
            continue
        _, images = reference_decode([path], label_bytes)
        indices = rng.integers(-3, len(reader) + 3, int(rng.integers(0, 10)))
        if np.all((indices >= 0) & (indices < len(reader))):
            np.testing.assert_array_equal(reader.decode(indices), images[indices])
        else:
            with pytest.raises(IndexError):
                reader.decode(indices)


# ----- real data ---------------------------------------------------------------------------


def test_real_cifar10_classes_and_channel_means(real_cifar10_root: Path):
    folder = real_cifar10_root / "cifar-10-batches-bin"
    train = RecordReader([folder / f"data_batch_{i}.bin" for i in range(1, 6)])
    test = RecordReader([folder / "test_batch.bin"])
    np.testing.assert_array_equal(np.bincount(train.labels), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
    images = train.decode()
    means = images.reshape(len(train), 3, -1).mean(axis=(0, 2), dtype=np.float64) / 255
    np.testing.assert_allclose(means, [0.4914, 0.4822, 0.4465], atol=5e-5)


# ----- names, working directories, re-opening and pickles ----------------------------------


def test_a_file_name_that_is_not_utf8_works_everywhere(tmp_path, cifar10_files):
    name = os.fsdecode(b"caf\xe9-\xff.bin")  # Latin-1 bytes: not UTF-8
    path = tmp_path / name
    path.write_bytes(cifar10_files[0].read_bytes())
    reader = RecordReader([path])
    assert reader.paths == [str(path)]
    assert pickle.loads(pickle.dumps(reader)).paths == [str(path)]
    path.write_bytes(path.read_bytes() + b"x")  # a size that is no whole number of records
    with pytest.raises(ValueError, match="not a multiple of the 3073-byte") as error:
        RecordReader([path])
    assert str(path) in str(error.value)
    with pytest.raises(FileNotFoundError) as missing:
        RecordReader([tmp_path / os.fsdecode(b"\xff-gone.bin")])
    assert missing.value.filename == str(tmp_path / os.fsdecode(b"\xff-gone.bin"))


def test_relative_paths_survive_a_change_of_directory(tmp_path, cifar10_files, monkeypatch):
    monkeypatch.chdir(cifar10_files[0].parent)
    reader = RecordReader([p.name for p in cifar10_files])
    assert reader.paths == [str(p) for p in cifar10_files]  # absolute
    state = pickle.dumps(reader)
    monkeypatch.chdir(tmp_path.parent)
    np.testing.assert_array_equal(pickle.loads(state).decode(), reader.decode())


def test_init_on_an_open_reader_is_refused(cifar10_files):
    reader = RecordReader(cifar10_files[:1])
    with pytest.raises(TypeError, match="already open"):
        reader.__init__(cifar10_files[1:])
    assert reader.paths == [str(cifar10_files[0])] and len(reader) == 41  # unchanged
    fresh = RecordReader.__new__(RecordReader)
    fresh.__init__(cifar10_files[1:])  # the first __init__ of an object still opens it
    assert len(fresh) == 47


@pytest.mark.parametrize(
    "change",
    [
        lambda p: os.utime(p, ns=(1, 1)),  # same size, another modification time
        lambda p: p.write_bytes(p.read_bytes() + p.read_bytes()[:3073]),  # one more record
    ],
    ids=["touched", "appended"],
)
def test_a_file_changed_between_pickling_and_unpickling_is_named(cifar10_files, change):
    state = pickle.dumps(RecordReader(cifar10_files))
    change(cifar10_files[1])
    with pytest.raises(OSError, match=r"changed .* since the reader was pickled") as error:
        pickle.loads(state)
    assert error.value.errno == errno.ESTALE
    assert error.value.filename == str(cifar10_files[1])


def test_a_reader_pickled_by_an_older_ltfast_still_unpickles(cifar10_files):
    reader = RecordReader.__new__(RecordReader)
    reader.__setstate__(([str(p) for p in cifar10_files], 1))  # no stamps then
    assert len(reader) == 88
