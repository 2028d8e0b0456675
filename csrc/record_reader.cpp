#include "record_reader.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

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

constexpr std::size_t kPrefetchDistance = 8;
constexpr std::size_t kCacheLine = 64;

void prefetch_record(const std::uint8_t* record) {
    for (std::size_t offset = 0; offset < RecordReader::kPixelBytes; offset += kCacheLine) {
        __builtin_prefetch(record + offset, 0, 1);
    }
}

// One record's CHW planes to HWC: pixel p's three channels become adjacent. The AVX2 clone
// lets the compiler vectorise the three-way interleave with byte shuffles; the default clone
// keeps the extension portable to any x86-64 (or other) CPU.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
void chw_to_hwc(const std::uint8_t* src, std::uint8_t* dst) {
    const std::uint8_t* red = src;
    const std::uint8_t* green = src + kPlane;
    const std::uint8_t* blue = src + 2 * kPlane;
    for (std::size_t p = 0; p < kPlane; ++p) {
        dst[3 * p] = red[p];
        dst[3 * p + 1] = green[p];
        dst[3 * p + 2] = blue[p];
    }
}

}  // namespace

RecordReader::RecordReader(const std::vector<std::filesystem::path>& paths, int label_bytes)
    : label_bytes_(label_bytes) {
    if (label_bytes != 1 && label_bytes != 2) {
        throw std::invalid_argument("label_bytes must be 1 (CIFAR-10) or 2 (CIFAR-100), got " +
                                    std::to_string(label_bytes));
    }
    if (paths.empty()) throw std::invalid_argument("RecordReader needs at least one file");
    files_.reserve(paths.size());
    for (const auto& path : paths) {
        files_.emplace_back(path);
        check_size(files_.back(), label_bytes);
    }
    for (const auto& file : files_) {
        const std::size_t count = file.size() / record_size();
        for (std::size_t r = 0; r < count; ++r) {
            const std::uint8_t* record = file.data() + r * record_size();
            if (label_bytes == 1) {
                if (record[0] >= 10) bad_label(file, r, "label", record[0], 10);
            } else {
                if (record[0] >= 20) bad_label(file, r, "coarse label", record[0], 20);
                if (record[1] >= 100) bad_label(file, r, "fine label", record[1], 100);
                coarse_labels_.push_back(record[0]);
            }
            labels_.push_back(record[label_bytes - 1]);
            records_.push_back(record + label_bytes);
        }
    }
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

void RecordReader::decode_range(const std::int64_t* indices, std::size_t begin, std::size_t end,
                                Layout layout, std::uint8_t* out) const {
    for (std::size_t i = begin; i < end; ++i) {
        // Random gathers jump between records, which defeats the hardware prefetcher at
        // every jump: ask for a record a few places ahead while copying this one.
        if (indices != nullptr && i + kPrefetchDistance < end) {
            prefetch_record(records_[indices[i + kPrefetchDistance]]);
        }
        const std::uint8_t* src = records_[indices ? indices[i] : i];
        std::uint8_t* dst = out + i * kPixelBytes;
        if (layout == Layout::NCHW) {
            std::memcpy(dst, src, kPixelBytes);
        } else {
            chw_to_hwc(src, dst);
        }
    }
}

void RecordReader::decode(const std::int64_t* indices, std::size_t count, Layout layout,
                          std::uint8_t* out, unsigned threads) const {
    if (threads == 0) {
        const std::size_t wanted = count * kPixelBytes / kBytesPerThread;
        // hardware_concurrency() reads /sys on every call: ask once.
        static const unsigned available = std::max(1u, std::thread::hardware_concurrency());
        threads = static_cast<unsigned>(
            std::clamp<std::size_t>(wanted, 1, std::min(available, kMaxThreads)));
    }
    threads = static_cast<unsigned>(std::clamp<std::size_t>(threads, 1, std::max<std::size_t>(count, 1)));
    if (threads == 1) {
        decode_range(indices, 0, count, layout, out);
        return;
    }
    // Each thread writes its own contiguous block of `out`, so the result cannot depend on
    // the thread count. If the OS refuses a thread, this thread decodes what is left.
    const std::size_t chunk = (count + threads - 1) / threads;
    std::vector<std::thread> workers;
    std::size_t assigned = std::min(count, chunk);  // [0, chunk) stays with this thread
    try {
        while (assigned < count) {
            const std::size_t begin = assigned;
            const std::size_t end = std::min(count, begin + chunk);
            workers.emplace_back([=] { decode_range(indices, begin, end, layout, out); });
            assigned = end;
        }
    } catch (const std::system_error&) {
    }
    decode_range(indices, 0, std::min(count, chunk), layout, out);
    decode_range(indices, assigned, count, layout, out);
    for (auto& worker : workers) worker.join();
}

}  // namespace ltfast
