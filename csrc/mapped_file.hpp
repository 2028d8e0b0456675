// A read-only memory map of one whole regular file, owned RAII-style, that can tell whether
// the file changed on disk since it was mapped.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ltfast {

// An OS error about one file; the bindings turn it into the matching OSError subclass
// (FileNotFoundError for ENOENT) with the path attached.
struct FileError : std::runtime_error {
    FileError(int code, std::filesystem::path file, const std::string& message = {})
        : std::runtime_error(message.empty() ? std::generic_category().message(code) : message),
          errno_code(code), path(std::move(file)) {}
    int errno_code;
    std::filesystem::path path;
};

// What identifies a file's contents cheaply: a truncation, an append or a rewrite in place
// changes the size or the modification time.
struct FileStamp {
    std::uintmax_t size = 0;
    std::int64_t mtime_ns = 0;

    static FileStamp of(const struct stat& info) {
#if defined(__APPLE__)
        const struct timespec& modified = info.st_mtimespec;
#else
        const struct timespec& modified = info.st_mtim;
#endif
        return {static_cast<std::uintmax_t>(info.st_size),
                static_cast<std::int64_t>(modified.tv_sec) * 1000000000 + modified.tv_nsec};
    }
    bool operator==(const FileStamp& other) const {
        return size == other.size && mtime_ns == other.mtime_ns;
    }
};

inline const char* file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
    return "not a regular file";
}

class MappedFile {
public:
    explicit MappedFile(std::filesystem::path path) : path_(std::move(path)) {
        // O_NONBLOCK: opening a FIFO must not wait for a writer. It changes nothing for the
        // regular files that pass the check below.
        fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd_ < 0) throw FileError(errno, path_);
        try {
            map();
        } catch (...) {
            ::close(fd_);
            throw;
        }
    }

    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& other) noexcept
        : path_(std::move(other.path_)), fd_(other.fd_), data_(other.data_), stamp_(other.stamp_) {
        other.fd_ = -1;
        other.data_ = nullptr;
    }
    MappedFile& operator=(MappedFile&&) = delete;

    ~MappedFile() noexcept {
        if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size());
        if (fd_ >= 0) ::close(fd_);
    }

    const std::filesystem::path& path() const noexcept { return path_; }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return static_cast<std::size_t>(stamp_.size); }
    const FileStamp& stamp() const noexcept { return stamp_; }

    // Throws FileError (ESTALE) if the file was truncated, extended or rewritten since it was
    // mapped: reading a truncated map kills the process with SIGBUS, and a rewritten one
    // would hand out other pixels under the labels read at opening. One fstat: ~0.2 us.
    void check_unchanged() const {
        struct stat info {};
        if (::fstat(fd_, &info) != 0) throw FileError(errno, path_);
        const FileStamp now = FileStamp::of(info);
        if (now == stamp_) return;
        std::string what = now.size == stamp_.size
                               ? "was rewritten (its modification time changed)"
                               : "changed size from " + std::to_string(stamp_.size) + " to " +
                                     std::to_string(now.size) + " bytes";
        throw FileError(ESTALE, path_,
                        path_.string() + " " + what +
                            " after it was opened; open the dataset (or RecordReader) again");
    }

private:
    void map() {
        struct stat info {};
        if (::fstat(fd_, &info) != 0) throw FileError(errno, path_);
        if (!S_ISREG(info.st_mode)) {
            throw std::invalid_argument(path_.string() + " is " + file_kind(info.st_mode) +
                                        "; expected a CIFAR .bin file");
        }
        if (info.st_size == 0) {
            throw std::invalid_argument(path_.string() +
                                        " is empty (0 bytes); expected CIFAR records");
        }
        stamp_ = FileStamp::of(info);
        void* map = ::mmap(nullptr, size(), PROT_READ, MAP_PRIVATE, fd_, 0);
        if (map == MAP_FAILED) throw FileError(errno, path_);
        data_ = static_cast<const std::uint8_t*>(map);
    }

    std::filesystem::path path_;
    int fd_ = -1;  // kept open for check_unchanged()
    const std::uint8_t* data_ = nullptr;
    FileStamp stamp_;
};

}  // namespace ltfast
