// CIFAR binary records (label byte(s) + 3072 CHW pixel bytes) read from memory-mapped files.
// Pure C++: nothing here touches Python, so decode() runs with the GIL released.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "mapped_file.hpp"

namespace ltfast {

enum class Layout { NCHW, NHWC };

class RecordReader {
public:
    static constexpr std::size_t kPixelBytes = 3 * 32 * 32;

    // label_bytes = 1: CIFAR-10 (label); 2: CIFAR-100 (coarse label, fine label).
    RecordReader(const std::vector<std::filesystem::path>& paths, int label_bytes);

    std::size_t size() const noexcept { return records_.size(); }
    int label_bytes() const noexcept { return label_bytes_; }
    std::size_t record_size() const noexcept { return label_bytes_ + kPixelBytes; }
    std::vector<std::filesystem::path> paths() const;  // absolute, as opened
    // Each file's size and modification time when it was opened (for a pickled reader).
    std::vector<FileStamp> stamps() const;

    // The CIFAR-10 label, or CIFAR-100's fine label.
    const std::vector<std::int64_t>& labels() const noexcept { return labels_; }
    // CIFAR-100's coarse label; empty for CIFAR-10.
    const std::vector<std::int64_t>& coarse_labels() const noexcept { return coarse_labels_; }

    // Throws std::out_of_range naming the first index outside [0, size()).
    void check_indices(const std::int64_t* indices, std::size_t count) const;

    // Writes `count` images to `out` (count * 3072 bytes). `indices` == nullptr means records
    // 0..count-1. Indices must have passed check_indices(). threads == 0 picks a count from
    // the request size; every thread count gives the same bytes. Throws FileError (ESTALE),
    // naming the file, when a file changed on disk since it was opened: checked before the
    // copy (size and modification time) and during it (each copied record's label bytes).
    void decode(const std::int64_t* indices, std::size_t count, Layout layout, std::uint8_t* out,
                unsigned threads = 0) const;

private:
    static constexpr std::size_t kAllMatch = static_cast<std::size_t>(-1);
    struct Range;      // one thread's share of a decode, run under the bus-error guard
    struct LabelScan;  // the pass over the label bytes at opening, likewise

    // Returns the first position in [begin, end) whose record's label bytes no longer match
    // the labels read at opening, or kAllMatch.
    std::size_t decode_range(const std::int64_t* indices, std::size_t begin, std::size_t end,
                             Layout layout, bool streaming, std::uint8_t* out) const;
    bool label_matches(std::size_t record) const noexcept;
    [[noreturn]] void throw_changed(std::size_t record) const;
    [[noreturn]] void throw_interrupted() const;
    [[noreturn]] void throw_bad_label(std::size_t record) const;
    std::size_t file_of(std::size_t record) const;  // the file that holds a record

    int label_bytes_;
    std::vector<MappedFile> files_;
    std::vector<std::size_t> first_record_;  // of each file
    std::vector<const std::uint8_t*> records_;  // pixel bytes of each record, in file order
    std::vector<std::int64_t> labels_;
    std::vector<std::int64_t> coarse_labels_;
};

}  // namespace ltfast
