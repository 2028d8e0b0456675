#include "record_reader.hpp"

#include "bus_guard.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <tmmintrin.h>
#endif

namespace ltfast {
namespace {

constexpr std::size_t kPlane = 32 * 32;
// Below this many bytes per thread, starting a thread costs more than it saves.
constexpr std::size_t kBytesPerThread = std::size_t{8} << 20;
constexpr unsigned kMaxThreads = 4;

const char* format_name(int label_bytes) { return label_bytes == 1 ? "CIFAR-10" : "CIFAR-100"; }

void check_size(const MappedFile& file, int label_bytes) {
    const std::size_t record = label_bytes + RecordReader::kPixelBytes;
    if (file.size() % record == 0) return;
    const int other = 3 - label_bytes;
    const std::size_t other_record = other + RecordReader::kPixelBytes;
    std::string message = file.path().string() + " has " + std::to_string(file.size()) +
                          " bytes, which is not a multiple of the " + std::to_string(record) +
                          "-byte " + format_name(label_bytes) +
                          " record (label_bytes=" + std::to_string(label_bytes) + ")";
    if (file.size() % other_record == 0) {
        message += "; it is a multiple of the " + std::to_string(other_record) + "-byte " +
                   format_name(other) + " record: open it with label_bytes=" +
                   std::to_string(other);
    } else {
        message += "; the file is truncated or not a CIFAR binary file";
    }
    throw std::invalid_argument(message);
}

[[noreturn]] void bad_label(const MappedFile& file, std::size_t record, const char* what,
                            int value, int limit) {
    throw std::invalid_argument(file.path().string() + ": record " + std::to_string(record) +
                                " has " + what + " " + std::to_string(value) +
                                ", expected 0.." + std::to_string(limit - 1) +
                                "; the file is corrupted or in another format");
}

// Outputs this large go past the caches anyway: write them with streaming stores, which skip
// reading each destination line before overwriting it (a third of the memory traffic).
constexpr std::size_t kStreamingBytes = std::size_t{16} << 20;
constexpr std::size_t kPrefetchDistance = 8;
constexpr std::size_t kCacheLine = 64;

void prefetch_record(const std::uint8_t* record) {
    for (std::size_t offset = 0; offset < RecordReader::kPixelBytes; offset += kCacheLine) {
        __builtin_prefetch(record + offset, 0, 1);
    }
}

#if defined(__SSE2__)
constexpr bool kHaveStreamingStores = true;

void stream_record(const std::uint8_t* src, std::uint8_t* dst) {  // dst 16-byte aligned
    for (std::size_t offset = 0; offset < RecordReader::kPixelBytes; offset += 16) {
        const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + offset));
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + offset), block);
    }
}

void finish_streaming() { _mm_sfence(); }
#else
constexpr bool kHaveStreamingStores = false;

void stream_record(const std::uint8_t* src, std::uint8_t* dst) {
    std::memcpy(dst, src, RecordReader::kPixelBytes);
}

void finish_streaming() {}
#endif

// One record's CHW planes to HWC: pixel p's three channels become adjacent.
void chw_to_hwc_scalar(const std::uint8_t* src, std::uint8_t* dst) {
    const std::uint8_t* red = src;
    const std::uint8_t* green = src + kPlane;
    const std::uint8_t* blue = src + 2 * kPlane;
    for (std::size_t p = 0; p < kPlane; ++p) {
        dst[3 * p] = red[p];
        dst[3 * p + 1] = green[p];
        dst[3 * p + 2] = blue[p];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// 16 pixels at a time: output block k (bytes 16k..16k+15) takes byte j = 16k + i from channel
// j % 3 of pixel j / 3, so each block is three byte shuffles OR-ed together.
struct InterleaveMasks {
    alignas(16) std::int8_t bytes[9][16];
    constexpr InterleaveMasks() : bytes{} {
        for (int block = 0; block < 3; ++block) {
            for (int channel = 0; channel < 3; ++channel) {
                for (int i = 0; i < 16; ++i) {
                    const int j = 16 * block + i;
                    bytes[3 * block + channel][i] =
                        static_cast<std::int8_t>(j % 3 == channel ? j / 3 : -128);  // -128: zero
                }
            }
        }
    }
};
constexpr InterleaveMasks kInterleave{};

// `streaming` writes with streaming stores (dst 16-byte aligned).
__attribute__((target("ssse3"))) void chw_to_hwc_ssse3(const std::uint8_t* src, std::uint8_t* dst,
                                                         bool streaming) {
    __m128i masks[9];
    for (int m = 0; m < 9; ++m) {
        masks[m] = _mm_load_si128(reinterpret_cast<const __m128i*>(kInterleave.bytes[m]));
    }
    for (std::size_t p = 0; p < kPlane; p += 16) {
        const __m128i planes[3] = {
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + p)),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + kPlane + p)),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * kPlane + p)),
        };
        for (int block = 0; block < 3; ++block) {
            const __m128i mixed = _mm_or_si128(
                _mm_or_si128(_mm_shuffle_epi8(planes[0], masks[3 * block]),
                             _mm_shuffle_epi8(planes[1], masks[3 * block + 1])),
                _mm_shuffle_epi8(planes[2], masks[3 * block + 2]));
            auto* target = reinterpret_cast<__m128i*>(dst + 3 * p + 16 * block);
            streaming ? _mm_stream_si128(target, mixed) : _mm_storeu_si128(target, mixed);
        }
    }
}

void chw_to_hwc(const std::uint8_t* src, std::uint8_t* dst, bool streaming) {
    static const bool ssse3 = __builtin_cpu_supports("ssse3");
    ssse3 ? chw_to_hwc_ssse3(src, dst, streaming) : chw_to_hwc_scalar(src, dst);
}
#else
void chw_to_hwc(const std::uint8_t* src, std::uint8_t* dst, bool) { chw_to_hwc_scalar(src, dst); }
#endif

}  // namespace

struct RecordReader::LabelScan {
    RecordReader* reader;
    std::size_t bad = kAllMatch;  // the first record with a label out of range

    static void work(void* scan) {
        auto& s = *static_cast<LabelScan*>(scan);
        RecordReader& r = *s.reader;
        const int limit = r.label_bytes_ == 1 ? 10 : 100;
        for (std::size_t i = 0; i < r.records_.size(); ++i) {
            const std::uint8_t* pixels = r.records_[i];
            r.labels_[i] = pixels[-1];
            if (r.label_bytes_ == 2) r.coarse_labels_[i] = pixels[-2];
            if (pixels[-1] >= limit || (r.label_bytes_ == 2 && pixels[-2] >= 20)) {
                s.bad = i;
                return;
            }
        }
    }
};

RecordReader::RecordReader(const std::vector<std::filesystem::path>& paths, int label_bytes)
    : label_bytes_(label_bytes) {
    if (label_bytes != 1 && label_bytes != 2) {
        throw std::invalid_argument("label_bytes must be 1 (CIFAR-10) or 2 (CIFAR-100), got " +
                                    std::to_string(label_bytes));
    }
    if (paths.empty()) throw std::invalid_argument("RecordReader needs at least one file");
    files_.reserve(paths.size());
    for (const auto& path : paths) {
        // std::filesystem::absolute("") fails with a bare "cannot make absolute path".
        if (path.empty()) {
            throw std::invalid_argument("RecordReader: path " +
                                        std::to_string(files_.size() + 1) + " of " +
                                        std::to_string(paths.size()) +
                                        " is empty; expected a CIFAR binary file");
        }
        // Absolute: a reader pickled to a worker with another working directory still
        // finds its files.
        files_.emplace_back(std::filesystem::absolute(path));
        check_size(files_.back(), label_bytes);
        first_record_.push_back(records_.size());
        const std::size_t count = files_.back().size() / record_size();
        for (std::size_t r = 0; r < count; ++r) {
            records_.push_back(files_.back().data() + r * record_size() + label_bytes);
        }
    }
    // The labels are read under the bus-error guard too: a file cut short while it is being
    // opened must raise, not end the process. The scan only fills preallocated vectors.
    labels_.resize(records_.size());
    if (label_bytes == 2) coarse_labels_.resize(records_.size());
    LabelScan scan{this};
    if (!run_catching_bus_errors(&LabelScan::work, &scan)) throw_interrupted();
    if (scan.bad != kAllMatch) throw_bad_label(scan.bad);
}

std::size_t RecordReader::file_of(std::size_t record) const {
    const auto after = std::upper_bound(first_record_.begin(), first_record_.end(), record);
    return static_cast<std::size_t>(after - first_record_.begin()) - 1;
}

void RecordReader::throw_bad_label(std::size_t record) const {
    const std::size_t file = file_of(record);
    const std::size_t local = record - first_record_[file];
    if (label_bytes_ == 1) bad_label(files_[file], local, "label", labels_[record], 10);
    if (coarse_labels_[record] >= 20) {
        bad_label(files_[file], local, "coarse label", coarse_labels_[record], 20);
    }
    bad_label(files_[file], local, "fine label", labels_[record], 100);
}

std::vector<FileStamp> RecordReader::stamps() const {
    std::vector<FileStamp> result;
    for (const auto& file : files_) result.push_back(file.stamp());
    return result;
}

std::vector<std::filesystem::path> RecordReader::paths() const {
    std::vector<std::filesystem::path> result;
    for (const auto& file : files_) result.push_back(file.path());
    return result;
}

void RecordReader::check_indices(const std::int64_t* indices, std::size_t count) const {
    const auto n = static_cast<std::int64_t>(size());
    for (std::size_t i = 0; i < count; ++i) {
        if (indices[i] < 0 || indices[i] >= n) {
            throw std::out_of_range("index " + std::to_string(indices[i]) + " at position " +
                                    std::to_string(i) + " is out of range for " +
                                    std::to_string(n) + " records (valid: 0.." +
                                    std::to_string(n - 1) + ")");
        }
    }
}

bool RecordReader::label_matches(std::size_t record) const noexcept {
    const std::uint8_t* pixels = records_[record];
    if (pixels[-1] != labels_[record]) return false;
    return label_bytes_ == 1 || pixels[-2] == coarse_labels_[record];
}

void RecordReader::throw_changed(std::size_t record) const {
    const std::size_t file = file_of(record);
    const MappedFile& changed = files_[file];
    changed.check_unchanged();  // names a size or time change when there is one
    throw FileError(ESTALE, changed.path(),
                    changed.path().string() + ": record " +
                        std::to_string(record - first_record_[file]) +
                        " no longer has the label read when the file was opened: the file was "
                        "rewritten; open the dataset (or RecordReader) again");
}

std::size_t RecordReader::decode_range(const std::int64_t* indices, std::size_t begin,
                                       std::size_t end, Layout layout, bool streaming,
                                       std::uint8_t* out) const {
    std::size_t mismatch = kAllMatch;
    for (std::size_t i = begin; i < end; ++i) {
        // Ask for a record a few places ahead while copying this one: random gathers jump
        // between records, which defeats the hardware prefetcher at every jump, and even in
        // order the NHWC transpose reads three planes at once (measured 1.8x faster).
        if (i + kPrefetchDistance < end) {
            prefetch_record(records_[indices ? indices[i + kPrefetchDistance] : i + kPrefetchDistance]);
        }
        const std::size_t record = indices ? static_cast<std::size_t>(indices[i]) : i;
        const std::uint8_t* src = records_[record];
        std::uint8_t* dst = out + i * kPixelBytes;
        if (layout == Layout::NHWC) {
            chw_to_hwc(src, dst, streaming);
        } else if (streaming) {
            stream_record(src, dst);
        } else {
            std::memcpy(dst, src, kPixelBytes);
        }
        // The label bytes sit beside the pixels just read: checking them costs nothing
        // measurable and catches a rewrite that kept the file's size and time stamp.
        if (mismatch == kAllMatch && !label_matches(record)) mismatch = i;
    }
    if (streaming) finish_streaming();  // streaming stores are weakly ordered
    return mismatch;
}

void RecordReader::throw_interrupted() const {
    try {
        for (const auto& file : files_) file.check_unchanged();  // names the file that shrank
    } catch (const FileError& changed) {
        throw FileError(changed.errno_code, changed.path,
                        std::string(changed.what()) + " (it shrank during the copy: bus error)");
    }
    throw FileError(EIO, files_.front().path(),
                    "a CIFAR file was cut short while it was read (bus error); open the dataset "
                    "(or RecordReader) again once the files are complete");
}

struct RecordReader::Range {
    const RecordReader* reader;
    const std::int64_t* indices;
    std::size_t begin, end;
    Layout layout;
    bool streaming;
    std::uint8_t* out;
    std::size_t mismatch = kAllMatch;
    bool interrupted = false;

    static void work(void* range) {
        auto& r = *static_cast<Range*>(range);
        r.mismatch = r.reader->decode_range(r.indices, r.begin, r.end, r.layout, r.streaming, r.out);
    }
    void operator()() { interrupted = !run_catching_bus_errors(&Range::work, this); }
};

void RecordReader::decode(const std::int64_t* indices, std::size_t count, Layout layout,
                          std::uint8_t* out, unsigned threads) const {
    for (const auto& file : files_) file.check_unchanged();
    if (threads == 0) {
        const std::size_t wanted = count * kPixelBytes / kBytesPerThread;
        // hardware_concurrency() reads /sys on every call: ask once.
        static const unsigned available = std::max(1u, std::thread::hardware_concurrency());
        threads = static_cast<unsigned>(
            std::clamp<std::size_t>(wanted, 1, std::min(available, kMaxThreads)));
    }
    threads = static_cast<unsigned>(std::clamp<std::size_t>(threads, 1, std::max<std::size_t>(count, 1)));
    // Records are 3072 = 16 * 192 bytes, so an aligned `out` keeps every record aligned.
    const bool streaming = kHaveStreamingStores && count * kPixelBytes >= kStreamingBytes &&
                           reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
    // Each thread writes its own contiguous block of `out`, so the result cannot depend on
    // the thread count. If the OS refuses a thread, this thread decodes what is left.
    const std::size_t chunk = (count + threads - 1) / threads;
    std::vector<Range> ranges;
    for (std::size_t begin = 0; begin < count || ranges.empty(); begin += chunk) {
        ranges.push_back({this, indices, begin, std::min(count, begin + chunk), layout, streaming, out});
    }
    std::vector<std::thread> workers;
    try {
        for (std::size_t r = 1; r < ranges.size(); ++r) workers.emplace_back(std::ref(ranges[r]));
    } catch (const std::system_error&) {
        for (std::size_t r = workers.size() + 1; r < ranges.size(); ++r) ranges[r]();
    }
    ranges[0]();
    for (auto& worker : workers) worker.join();
    std::size_t first = kAllMatch;
    for (const auto& range : ranges) {
        if (range.interrupted) throw_interrupted();
        first = std::min(first, range.mismatch);
    }
    if (first != kAllMatch) throw_changed(indices ? static_cast<std::size_t>(indices[first]) : first);
}

}  // namespace ltfast
