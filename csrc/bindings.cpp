// Python bindings: argument checks and conversions happen here, with the GIL held; the copy
// loops in RecordReader run without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "record_reader.hpp"

namespace py = pybind11;
using ltfast::Layout;
using ltfast::RecordReader;

namespace {

constexpr py::ssize_t kSide = 32;

Layout parse_layout(const std::string& layout) {
    if (layout == "NCHW") return Layout::NCHW;
    if (layout == "NHWC") return Layout::NHWC;
    throw py::value_error("layout must be 'NCHW' or 'NHWC', got '" + layout + "'");
}

std::vector<py::ssize_t> image_shape(py::ssize_t count, Layout layout) {
    if (layout == Layout::NCHW) return {count, 3, kSide, kSide};
    return {count, kSide, kSide, 3};
}

// A shape as Python prints it: (2, 3) or (2,).
std::string shape_str(const py::array& array) {
    std::string text = "(";
    for (py::ssize_t d = 0; d < array.ndim(); ++d) {
        text += (d > 0 ? ", " : "") + std::to_string(array.shape(d));
    }
    return text + (array.ndim() == 1 ? ",)" : ")");
}

// The reader behind `self`, or a clear error for one that was never opened: `__new__` without
// `__init__`, or a `__setstate__` that failed, leaves no C++ object to read.
const RecordReader& reader_of(py::handle self) {
    auto* instance = reinterpret_cast<py::detail::instance*>(self.ptr());
    auto holder = instance->get_value_and_holder();
    if (!holder.holder_constructed()) {
        throw py::value_error(
            "this RecordReader was never opened (made by __new__, or its unpickling failed); "
            "create it with RecordReader(paths, label_bytes)");
    }
    return *holder.value_ptr<RecordReader>();
}

// Indices beyond int64 (uint64 from 2**63 up) named with their true value, before the
// conversion to int64 would wrap them to negative numbers.
void check_uint64(const py::array& array, std::size_t records) {
    auto values = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>::ensure(array);
    for (py::ssize_t i = 0; i < values.size(); ++i) {
        if (values.data()[i] > static_cast<std::uint64_t>(INT64_MAX)) {
            throw py::index_error("index " + std::to_string(values.data()[i]) + " at position " +
                                  std::to_string(i) + " is out of range for " +
                                  std::to_string(records) + " records (valid: 0.." +
                                  std::to_string(records - 1) + ")");
        }
    }
}

// A private copy of the caller's indices: another Python thread cannot change them between
// the bounds check and the copy loop.
std::vector<std::int64_t> to_indices(const py::object& indices, std::size_t records) {
    py::array array = py::isinstance<py::array>(indices)
                          ? py::reinterpret_borrow<py::array>(indices)
                          : py::array(py::module_::import("numpy").attr("asarray")(indices));
    if (array.ndim() != 1) {
        throw py::value_error("indices must be a 1-D array, got shape " + shape_str(array));
    }
    if (array.size() == 0) return {};
    const char kind = array.dtype().kind();
    if (kind != 'i' && kind != 'u') {
        throw py::type_error("indices must be integers, got dtype " +
                             py::str(array.dtype()).cast<std::string>());
    }
    if (kind == 'u' && array.itemsize() == 8) check_uint64(array, records);
    auto as_int64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
    return {as_int64.data(), as_int64.data() + as_int64.size()};
}

// The caller's buffer, checked rather than converted: a converted copy would silently drop
// the writes.
std::uint8_t* checked_out(const py::object& out, const std::vector<py::ssize_t>& shape) {
    if (!py::isinstance<py::array>(out)) {
        throw py::type_error("out must be a numpy.ndarray (for a torch tensor pass tensor.numpy()), got " +
                             py::str(py::type::of(out)).cast<std::string>());
    }
    auto array = py::reinterpret_borrow<py::array>(out);
    if (!array.dtype().is(py::dtype::of<std::uint8_t>())) {
        throw py::type_error("out must have dtype uint8, got " +
                             py::str(array.dtype()).cast<std::string>());
    }
    if (array.ndim() != static_cast<py::ssize_t>(shape.size()) ||
        !std::equal(shape.begin(), shape.end(), array.shape())) {
        throw py::value_error("out has shape " + shape_str(array) + ", expected " +
                              shape_str(py::array(py::dtype::of<std::uint8_t>(), shape)));
    }
    if (!(array.flags() & py::array::c_style)) throw py::value_error("out must be C-contiguous");
    if (!array.writeable()) throw py::value_error("out is read-only");
    return static_cast<std::uint8_t*>(array.mutable_data());
}

py::array decode(py::handle self, const py::object& indices, const std::string& layout_name,
                 const py::object& out, int threads) {
    const RecordReader& reader = reader_of(self);
    if (threads < 0) {
        throw py::value_error("threads must be >= 0 (0 picks a count), got " +
                              std::to_string(threads));
    }
    const Layout layout = parse_layout(layout_name);
    std::vector<std::int64_t> picked;
    const bool all = indices.is_none();
    if (!all) {
        picked = to_indices(indices, reader.size());
        reader.check_indices(picked.data(), picked.size());
    }
    const auto count = static_cast<py::ssize_t>(all ? reader.size() : picked.size());
    const auto shape = image_shape(count, layout);
    py::array result = out.is_none() ? py::array_t<std::uint8_t>(shape)
                                     : py::reinterpret_borrow<py::array>(out);
    std::uint8_t* target = out.is_none() ? static_cast<std::uint8_t*>(result.mutable_data())
                                         : checked_out(out, shape);
    {
        // Safe without the GIL: `picked` is a private copy, `result` / `out` stay referenced by
        // this frame, and decode() touches no Python object.
        py::gil_scoped_release release;
        reader.decode(all ? nullptr : picked.data(), count, layout, target,
                      static_cast<unsigned>(threads));
    }
    return result;
}

py::array_t<std::int64_t> to_array(const std::vector<std::int64_t>& values) {
    return py::array_t<std::int64_t>(static_cast<py::ssize_t>(values.size()), values.data());
}

// Bytes from the file system (a path, or a message naming one) as Python spells them:
// os.fsdecode's surrogate escapes keep a file name that is not UTF-8 intact.
py::str fs_text(const std::string& bytes) {
    return py::reinterpret_steal<py::str>(
        PyUnicode_DecodeFSDefaultAndSize(bytes.data(), static_cast<py::ssize_t>(bytes.size())));
}

py::list path_strings(py::handle self) {
    py::list result;
    for (const auto& path : reader_of(self).paths()) result.append(fs_text(path.native()));
    return result;
}

// What a pickled reader carries: its paths, label bytes and each file's (size, mtime_ns)
// when it was opened, so that unpickling notices a file that changed in between.
py::tuple reader_state(py::handle self) {
    py::list stamps;
    for (const auto& stamp : reader_of(self).stamps()) {
        stamps.append(py::make_tuple(stamp.size, stamp.mtime_ns));
    }
    return py::make_tuple(path_strings(self), reader_of(self).label_bytes(), stamps);
}

RecordReader reader_from_state(const py::tuple& state) {
    if (state.size() != 2 && state.size() != 3) {
        throw py::value_error("not a pickled RecordReader state");
    }
    RecordReader reader(state[0].cast<std::vector<std::filesystem::path>>(), state[1].cast<int>());
    if (state.size() == 2) return reader;  // pickled by an older ltfast: no stamps
    const auto stamps = state[2].cast<std::vector<std::pair<std::uintmax_t, std::int64_t>>>();
    const auto now = reader.stamps();
    const auto paths = reader.paths();
    for (std::size_t i = 0; i < now.size() && i < stamps.size(); ++i) {
        if (now[i].size != stamps[i].first || now[i].mtime_ns != stamps[i].second) {
            throw ltfast::FileError(ESTALE, paths[i],
                                    paths[i].string() +
                                        " changed (size or modification time) since the reader "
                                        "was pickled; open the dataset (or RecordReader) again");
        }
    }
    return reader;
}

// A method of the reader behind `self`, checked by reader_of().
template <typename Result>
auto method(Result (*read)(const RecordReader&)) {
    return [read](py::handle self) { return read(reader_of(self)); };
}

}  // namespace

PYBIND11_MODULE(_ltfast, m) {
    m.doc() = "ltfast's compiled core: memory-mapped CIFAR binary records";
    m.attr("__version__") = LTFAST_VERSION;

    py::register_exception_translator([](std::exception_ptr error) {
        try {
            if (error) std::rethrow_exception(error);
        } catch (const ltfast::FileError& e) {
            // OSError(errno, message, filename) picks the subclass (FileNotFoundError, ...).
            py::object error = py::reinterpret_borrow<py::object>(PyExc_OSError)(
                e.errno_code, fs_text(e.what()), fs_text(e.path.native()));
            // Raised as its own type, so that it stays the same when it passes through
            // pybind11 again (the __init__ wrapper below).
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
        } catch (const std::invalid_argument& e) {
            PyErr_SetObject(PyExc_ValueError, fs_text(e.what()).ptr());  // may name a file
        }
    });

    py::class_<RecordReader>(m, "RecordReader", R"doc(
Records of CIFAR binary files, memory-mapped, as one sequence in the order given.

label_bytes=1 reads CIFAR-10 (3073-byte records), label_bytes=2 CIFAR-100 (3074 bytes:
coarse label, then fine label). Every file's size and every label are checked on opening.
A reader pickles by its paths and reopens the files, so it can go to spawned workers.)doc")
        .def(py::init<const std::vector<std::filesystem::path>&, int>(), py::arg("paths"),
             py::arg("label_bytes") = 1)
        .def(py::init([](const std::filesystem::path& path, int label_bytes) {
                 return RecordReader({path}, label_bytes);
             }),
             py::arg("path"), py::arg("label_bytes") = 1)
        .def("__len__", method(+[](const RecordReader& r) { return r.size(); }))
        .def_property_readonly("label_bytes",
                               method(+[](const RecordReader& r) { return r.label_bytes(); }))
        .def_property_readonly("record_size",
                               method(+[](const RecordReader& r) { return r.record_size(); }))
        .def_property_readonly("paths", &path_strings, "The files, in record order.")
        .def_property_readonly(
            "labels", method(+[](const RecordReader& r) { return to_array(r.labels()); }),
            "int64 labels (CIFAR-100: the fine label), a new array each time.")
        .def_property_readonly(
            "coarse_labels",
            method(+[](const RecordReader& r) {
                if (r.label_bytes() == 1) {
                    throw py::attribute_error("CIFAR-10 records (label_bytes=1) have no coarse label");
                }
                return to_array(r.coarse_labels());
            }),
            "CIFAR-100's int64 coarse labels, a new array each time.")
        .def("decode", &decode, py::arg("indices") = py::none(), py::arg("layout") = "NCHW",
             py::arg("out") = py::none(), py::arg("threads") = 0, R"doc(
Images of all records, or of `indices` (any order, repeats allowed), as uint8.

layout "NCHW" gives shape (N, 3, 32, 32), "NHWC" (N, 32, 32, 3). `out`, when given, must
be a C-contiguous uint8 numpy array of exactly that shape; it is filled and returned.
threads=0 picks a thread count from the request size; the bytes never depend on it.)doc")
        .def("__repr__",
             [](py::handle self) -> std::string {
                 if (!py::detail::is_holder_constructed(self.ptr())) return "RecordReader(not opened)";
                 const RecordReader& r = reader_of(self);
                 return "RecordReader(" + std::to_string(r.paths().size()) + " files, " +
                        std::to_string(r.size()) + " records, label_bytes=" +
                        std::to_string(r.label_bytes()) + ")";
             })
        .def(py::pickle(&reader_state, &reader_from_state));

    // pybind11 silently ignores __init__ on an object it already built; a reader re-opened
    // that way would keep its old files while its caller believes otherwise. Refuse instead.
    py::object reader_class = m.attr("RecordReader");
    py::object construct = reader_class.attr("__init__");
    reader_class.attr("__init__") = py::cpp_function(
        [construct](py::handle self, py::args args, py::kwargs kwargs) {
            auto* instance = reinterpret_cast<py::detail::instance*>(self.ptr());
            if (instance->get_value_and_holder().holder_constructed()) {
                throw py::type_error(
                    "this RecordReader is already open; __init__ cannot open other files in "
                    "it: create a new RecordReader(paths, label_bytes)");
            }
            construct(self, *args, **kwargs);
        },
        // Not named __init__: pybind11 would treat it as a constructor and skip it for an
        // object already built, which is what this wrapper is for.
        py::is_method(reader_class), py::name("open"),
        py::doc("RecordReader(paths, label_bytes=1), or RecordReader(path, label_bytes=1)"));
}
