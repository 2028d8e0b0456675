"""Datasets: torchvision's API on the compiled reader, long-tailed subsets, and download."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import CIFAR10_NAMES, make_cifar10_root, make_cifar100_root, reference_decode
from PIL import Image
from test_longtail import reference_subset
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from ltfast import CIFAR10, CIFAR100, LongTailCIFAR10, LongTailCIFAR100
from ltfast.datasets import DatasetError
from ltfast.longtail import images_per_class


def reference_split(root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    labels, images = reference_decode([folder / n for n in names], 1)
    return labels[:, 0], images


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    return make_cifar10_root(tmp_path / "data")


def test_cifar10_has_torchvisions_api(cifar10_root):
    labels, images = reference_split(cifar10_root, train=True)
    train = CIFAR10(cifar10_root)
    assert len(train) == 1000
    assert train.targets == labels.tolist()
    assert train.classes == CIFAR10_NAMES
    assert train.class_to_idx["truck"] == 9
    np.testing.assert_array_equal(train.class_counts, [100] * 10)
    assert isinstance(train.data, np.ndarray) and train.data.shape == (1000, 32, 32, 3)
    np.testing.assert_array_equal(train.data, images.transpose(0, 2, 3, 1))
    image, target = train[17]
    assert isinstance(image, Image.Image) and image.size == (32, 32) and image.mode == "RGB"
    assert isinstance(target, int) and target == labels[17]
    np.testing.assert_array_equal(np.asarray(image), images[17].transpose(1, 2, 0))
    test = CIFAR10(cifar10_root, train=False)
    assert len(test) == 100 and "Split: Test" in repr(test)


def test_the_fast_path_gives_new_tensors_and_batches(cifar10_root):
    labels, images = reference_split(cifar10_root, train=True)
    dataset = CIFAR10(
        cifar10_root,
        transform=v2.Compose(
            [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)]
        ),
        target_transform=lambda y: y + 100,
        output="tensor",
    )
    image, target = dataset[3]
    assert target == labels[3] + 100
    torch.testing.assert_close(image, torch.from_numpy(images[3]).float() / 127.5 - 1)
    batch = dataset.__getitems__([5, 1, 5])
    assert [t for _, t in batch] == (labels[[5, 1, 5]] + 100).tolist()
    loader = DataLoader(dataset, batch_size=100, num_workers=2)
    xs, ys = zip(*loader, strict=True)
    torch.testing.assert_close(torch.cat(xs), torch.from_numpy(images).float() / 127.5 - 1)
    assert torch.cat(ys).tolist() == (labels + 100).tolist()
    all_images, targets = dataset.tensors()
    np.testing.assert_array_equal(all_images.numpy(), images)
    assert targets.dtype == torch.int64 and targets.tolist() == labels.tolist()


def test_an_in_place_transform_never_changes_the_dataset(cifar10_root):
    erase = v2.RandomErasing(p=1.0, value=0, inplace=True)
    dataset = CIFAR10(cifar10_root, transform=erase, output="tensor")
    before = dataset.data.copy()
    for _ in DataLoader(dataset, batch_size=64):  # the batched __getitems__ path
        pass
    for index in range(len(dataset)):  # the one-item path
        dataset[index]
    np.testing.assert_array_equal(dataset.data, before)


def test_long_tail_cifar10_is_the_standard_subset(cifar10_root):
    labels, images = reference_split(cifar10_root, train=True)
    dataset = LongTailCIFAR10(cifar10_root, imb_factor=0.1, seed=1)
    counts = images_per_class(10, 0.1, max_per_class=100)
    expected = reference_subset(labels, counts, seed=1)
    np.testing.assert_array_equal(dataset.indices, expected)
    np.testing.assert_array_equal(dataset.class_counts, counts)
    np.testing.assert_array_equal(dataset.data, images[expected].transpose(0, 2, 3, 1))
    assert dataset.targets == labels[expected].tolist()
    assert dataset.get_cls_num_list() == counts and dataset.cls_num == 10
    assert "factor 0.1" in repr(dataset)
    test = LongTailCIFAR10(cifar10_root, imb_factor=0.1, train=False)
    np.testing.assert_array_equal(test.class_counts, [10] * 10)
    same = LongTailCIFAR10(cifar10_root, imb_factor=0.1, rand_number=1)  # LDAM-DRW's name
    np.testing.assert_array_equal(same.indices, expected)
    with pytest.raises(ValueError, match=r"seed .* and rand_number .* name the same thing"):
        LongTailCIFAR10(cifar10_root, seed=1, rand_number=2)


def test_cifar100_fine_coarse_and_long_tail(tmp_path):
    root = make_cifar100_root(tmp_path)
    fine = CIFAR100(root)
    coarse = CIFAR100(root, label="coarse")
    assert len(fine.classes) == 100 and len(coarse.classes) == 20
    assert coarse.targets == [t // 5 for t in fine.targets]
    lt = LongTailCIFAR100(root, imb_factor=0.1)
    np.testing.assert_array_equal(lt.class_counts, images_per_class(100, 0.1, max_per_class=10))
    with pytest.raises(ValueError, match="label must be 'fine' or 'coarse'"):
        CIFAR100(root, label="medium")


def test_real_long_tail_cifar10(real_cifar10_root):
    dataset = LongTailCIFAR10(real_cifar10_root)
    assert len(dataset) == 12406
    np.testing.assert_array_equal(dataset.class_counts, images_per_class(10, 0.01))


def test_absent_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        CIFAR10(tmp_path)


def test_corrupted_data_is_named(cifar10_root):
    batch = cifar10_root / "cifar-10-batches-bin" / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-1])
    with pytest.raises(RuntimeError, match=r"data_batch_2.bin has .* bytes"):
        CIFAR10(cifar10_root)


def test_a_flipped_pixel_is_named_unless_the_check_is_off(cifar10_root):
    batch = cifar10_root / "cifar-10-batches-bin" / "data_batch_3.bin"
    CIFAR10(cifar10_root)  # verified, and remembered
    content = bytearray(batch.read_bytes())
    content[5000] ^= 1  # a pixel: same size, same labels
    batch.write_bytes(bytes(content))
    with pytest.raises(DatasetError, match=r"data_batch_3.bin is corrupted or was modified: md5"):
        CIFAR10(cifar10_root)
    loaded = CIFAR10(cifar10_root, check_integrity=False)  # the user's call: loads as it is
    record, offset = divmod(5000, 3073)
    channel, rest = divmod(offset - 1, 1024)  # after the label byte, CHW planes
    assert loaded.data[400 + record, rest // 32, rest % 32, channel] == content[5000]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "names 0 classes, expected 10"),
        (b"\n\n  \n", "names 0 classes, expected 10"),
        ("\n".join([*CIFAR10_NAMES, "unicorn"]).encode(), "names 11 classes, expected 10"),
        ("\n".join(CIFAR10_NAMES[:9]).encode(), "names 9 classes, expected 10"),
        (b"\x00\x01\x02airplane\xff\xfe", "is not a text file of class names"),
        (bytes(range(256)) * 4, "is not a text file of class names"),
    ],
)
def test_a_damaged_class_names_file_is_named(cifar10_root, content, message):
    meta = cifar10_root / "cifar-10-batches-bin" / "batches.meta.txt"
    meta.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as error:
        CIFAR10(cifar10_root)
    assert "batches.meta.txt" in str(error.value) and "download=True" in str(error.value)


def test_cifar100_class_name_files_are_counted(tmp_path):
    root = make_cifar100_root(tmp_path)
    (root / "cifar-100-binary" / "coarse_label_names.txt").write_text("a\nb\n")
    CIFAR100(root)  # fine names are intact
    with pytest.raises(DatasetError, match="names 2 classes, expected 20"):
        CIFAR100(root, label="coarse")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": 1.5}, r"seed must be an integer, got 1\.5"),
        ({"seed": np.float64(2.0)}, "seed must be an integer"),
        ({"imb_factor": "0.01"}, "imb_factor must be a number, got '0.01'"),
    ],
)
def test_long_tail_arguments_of_the_wrong_type_are_named(cifar10_root, kwargs, message):
    with pytest.raises(TypeError, match=message):
        LongTailCIFAR10(cifar10_root, **kwargs)


def test_bad_long_tail_parameters(cifar10_root):
    with pytest.raises(ValueError, match="imb_factor must be in"):
        LongTailCIFAR10(cifar10_root, imb_factor=2)
    with pytest.raises(ValueError, match="imb_type must be one of"):
        LongTailCIFAR10(cifar10_root, imb_type="linear")


# ----- download against a local server -----------------------------------------------------


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def archive(tmp_path: Path) -> bytes:
    source = make_cifar10_root(tmp_path / "source") / "cifar-10-batches-bin"
    return tar_gz({f"cifar-10-batches-bin/{p.name}": p.read_bytes() for p in source.iterdir()})


class Server:
    """Serves `files` on 127.0.0.1; paths starting with /cut/ stop halfway through the body."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path.removeprefix("/cut"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path.startswith("/cut/") else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(archive):
    served = Server({"/cifar.tar.gz": archive, "/evil.tar.gz": tar_gz({"../evil.txt": b"x"})})
    yield served
    served.close()


def dataset_class(url: str, md5: str) -> type[CIFAR10]:
    return type("LocalCIFAR10", (CIFAR10,), {"url": url, "tgz_md5": md5})


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") or p.suffix == ".part")


def test_download_checks_md5_extracts_and_then_skips(tmp_path, server, archive):
    local = dataset_class(server.url + "/cifar.tar.gz", hashlib.md5(archive).hexdigest())
    root = tmp_path / "root"
    dataset = local(root, download=True)
    assert len(dataset) == 1000 and server.requests == ["/cifar.tar.gz"]
    assert leftovers(root) == []
    local(root, download=True)  # present and intact: nothing fetched
    assert server.requests == ["/cifar.tar.gz"]
    # A corrupted copy is fetched again when download=True.
    batch = root / "cifar-10-batches-bin" / "data_batch_1.bin"
    batch.write_bytes(b"\0" * 10)
    (root / "cifar-10-binary.tar.gz").unlink()
    assert len(local(root, download=True)) == 1000
    assert server.requests == ["/cifar.tar.gz"] * 2


def test_wrong_md5_leaves_nothing(tmp_path, server):
    root = tmp_path / "root"
    with pytest.raises(RuntimeError, match=r"corrupted: md5 .*, expected 0123"):
        dataset_class(server.url + "/cifar.tar.gz", "0123" * 8)(root, download=True)
    assert sorted(p.name for p in root.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, server, archive):
    root = tmp_path / "root"
    local = dataset_class(server.url + "/cut/cifar.tar.gz", hashlib.md5(archive).hexdigest())
    with pytest.raises(RuntimeError, match="interrupted after 9"):
        local(root, download=True)
    assert sorted(p.name for p in root.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="download=True"):
        local(root)


def test_offline_download_says_what_to_do(tmp_path, server):
    server.close()  # nothing listens there any more
    local = dataset_class(server.url + "/cifar.tar.gz", "0" * 32)
    with pytest.raises(RuntimeError, match=r"could not download .* place it at"):
        local(tmp_path / "root", download=True)


def test_archive_escaping_root_is_refused(tmp_path, server):
    evil = server.files["/evil.tar.gz"]
    root = tmp_path / "deep" / "root"
    local = dataset_class(server.url + "/evil.tar.gz", hashlib.md5(evil).hexdigest())
    with pytest.raises(RuntimeError, match=r"refusing to extract '\.\./evil\.txt'"):
        local(root, download=True)
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (root / "cifar-10-batches-bin").exists() and leftovers(root) == []
