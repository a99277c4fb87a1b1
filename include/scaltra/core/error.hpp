// The scaltra::Error family. Every public entry point validates its input and
// throws one of these, naming the offending field, before touching any state.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace scaltra {

/// Base of every exception thrown by scaltra.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A hyperparameter or argument outside its allowed range.
class InvalidArgument : public Error {
public:
    using Error::Error;
};

/// Vectors or matrices whose sizes do not match.
class DimensionMismatch : public Error {
public:
    using Error::Error;
};

/// A loss or gradient that is NaN or infinite.
class NonFinite : public Error {
public:
    using Error::Error;
};

/// A saved optimizer state that cannot be loaded (bad header, wrong shapes, truncated).
class CorruptState : public Error {
public:
    using Error::Error;
};

/// A data file that cannot be read (bad magic number, truncated, size mismatch).
class CorruptData : public Error {
public:
    using Error::Error;
};

/// A data set or file that is not where it was looked for.
class MissingData : public Error {
public:
    using Error::Error;
};

namespace detail {

/// Concatenates its arguments with operator<< into a string.
template <class... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}

}  // namespace detail
}  // namespace scaltra
