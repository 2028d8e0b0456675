// A read-only memory map of one whole file, owned RAII-style.
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
    FileError(int code, std::filesystem::path file)
        : std::runtime_error(std::generic_category().message(code)), errno_code(code),
          path(std::move(file)) {}
    int errno_code;
    std::filesystem::path path;
};

class MappedFile {
public:
    explicit MappedFile(std::filesystem::path path) : path_(std::move(path)) {
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw FileError(errno, path_);
        struct stat info {};
        if (::fstat(fd, &info) != 0) {
            const int code = errno;
            ::close(fd);
            throw FileError(code, path_);
        }
        if (S_ISDIR(info.st_mode)) {
            ::close(fd);
            throw std::invalid_argument(path_.string() + " is a directory; expected a CIFAR .bin file");
        }
        size_ = static_cast<std::size_t>(info.st_size);
        if (size_ == 0) {
            ::close(fd);
            throw std::invalid_argument(path_.string() + " is empty (0 bytes); expected CIFAR records");
        }
        void* map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        const int code = errno;
        ::close(fd);  // the mapping keeps the file alive; the descriptor is no longer needed
        if (map == MAP_FAILED) throw FileError(code, path_);
        data_ = static_cast<const std::uint8_t*>(map);
    }

    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& other) noexcept
        : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
        other.data_ = nullptr;
        other.size_ = 0;
    }
    MappedFile& operator=(MappedFile&&) = delete;

    ~MappedFile() noexcept {
        if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    }

    const std::filesystem::path& path() const noexcept { return path_; }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    std::filesystem::path path_;
    const std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace ltfast
