// Optimizer state as data, and its versioned binary format.
//
// Every optimizer keeps its state (moments, step count, learned meta-parameters)
// in a plain aggregate that lists its fields:
//
//     struct AdamState {
//         std::int64_t step = 0;  Vec<S> m, v;
//         static constexpr std::array field_names{"step", "m", "v"};
//         auto fields() { return std::tie(step, m, v); }
//         auto fields() const { return std::tie(step, m, v); }
//     };
//
// so generic code can visit, compare, save and load it. The file format
// (little-endian, as written by this machine):
//
//     "scaltra\0"  u32 format version  u32 sizeof(scalar)  string optimizer name
//     u32 field count, then per field: string name, u8 kind, payload
//     kind 0: i64 integer; kind 1: one scalar; kind 2: i64 rows, i64 cols, rows*cols scalars;
//     kind 3: a nested state (APO's base optimizer): u32 field count, then its fields as above
//     kind 4: i64 rows, i64 cols, rows*cols i32 (an IndexMat: LODO's permutations)
//     kind 5: i64 rows, i64 cols, rows*cols bfloat16 (a state kept compact: bfloat16.hpp)
//
// where a string is a u32 length and its bytes. Loading checks every header
// value, field name and shape against the live state, that every value is
// finite, and the state's own `validate()` when it has one (a step count in
// range, second moments ≥ 0); then it either replaces the whole state or throws
// CorruptState and leaves it untouched. check_state makes the same checks of a
// state built in memory, for the optimizers' set_state.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <istream>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "bfloat16.hpp"
#include "error.hpp"
#include "types.hpp"
#include "validate.hpp"

namespace scaltra {

/// A state aggregate: named fields exposed as a tuple of references.
template <class State>
concept StateAggregate = requires(State& s, const State& cs) {
    State::field_names;
    s.fields();
    cs.fields();
    requires std::tuple_size_v<decltype(s.fields())>
    == State::field_names.size();
};

/// Calls f(name, field) for every field of `state`, in declaration order.
template <class State, class F>
requires StateAggregate<std::remove_const_t<State>>
void for_each_field(State& state, F&& f) {
    auto refs = state.fields();
    constexpr auto& names = std::remove_const_t<State>::field_names;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (f(std::string_view(names[I]), std::get<I>(refs)), ...);
    }
    (std::make_index_sequence<names.size()>{});
}

template <class State>
requires StateAggregate<State>
bool bitwise_equal(const State& a, const State& b);

namespace detail {

inline constexpr char state_magic[8] = {'s', 'c', 'a', 'l', 't', 'r', 'a', '\0'};
inline constexpr std::uint32_t state_format_version = 1;

enum class FieldKind : std::uint8_t {
    integer = 0,
    scalar = 1,
    matrix = 2,
    state = 3,
    indices = 4,
    bfloat16_matrix = 5
};

/// A field's matrix kind: the optimizer's scalars, 32-bit indices, or bfloat16.
template <class S, class Dense>
constexpr FieldKind matrix_kind() {
    using T = typename Dense::Scalar;
    static_assert(
        std::is_same_v<T, S> || std::is_same_v<T, std::int32_t> || std::is_same_v<T, bfloat16>);
    if constexpr (std::is_same_v<T, S>)
        return FieldKind::matrix;
    else if constexpr (std::is_same_v<T, bfloat16>)
        return FieldKind::bfloat16_matrix;
    else
        return FieldKind::indices;
}

template <class T>
void write_raw(std::ostream& out, const T& value) {
    out.write(reinterpret_cast<const char*>(&value), sizeof(T));
}

inline void write_string(std::ostream& out, std::string_view s) {
    write_raw(out, static_cast<std::uint32_t>(s.size()));
    out.write(s.data(), static_cast<std::streamsize>(s.size()));
}

// The fields of a state, each as its name and its value (nested states recurse).
template <class S, class State>
requires StateAggregate<State>
void write_fields(std::ostream& out, const State& state);
template <class S, class State>
requires StateAggregate<State>
void read_fields(std::istream& in, std::string_view name, State& state);
template <class S, class State>
requires StateAggregate<State>
void check_state_fields(const State& state, const State& reference);

template <class T>
T read_raw(std::istream& in, std::string_view what) {
    T value{};
    if (!in.read(reinterpret_cast<char*>(&value), sizeof(T)))
        throw CorruptState(concat("Saved state is truncated while reading ", what));
    return value;
}

inline std::string read_string(std::istream& in, std::string_view what) {
    const auto n = read_raw<std::uint32_t>(in, what);
    if (n > (1u << 20))
        throw CorruptState(concat("Saved state has an implausible ", what));
    std::string s(n, '\0');
    if (n > 0 && !in.read(s.data(), n))
        throw CorruptState(concat("Saved state is truncated while reading ", what));
    return s;
}

template <class S>
void write_field(std::ostream& out, const std::int64_t& v) {
    write_raw(out, FieldKind::integer);
    write_raw(out, v);
}

template <class S, class Dense>
requires std::is_base_of_v<Eigen::PlainObjectBase<Dense>, Dense>
void write_field(std::ostream& out, const Dense& m) {
    using T = typename Dense::Scalar;
    write_raw(out, matrix_kind<S, Dense>());
    write_raw(out, static_cast<std::int64_t>(m.rows()));
    write_raw(out, static_cast<std::int64_t>(m.cols()));
    out.write(reinterpret_cast<const char*>(m.data()),
              static_cast<std::streamsize>(sizeof(T) * static_cast<std::size_t>(m.size())));
}

template <class S>
requires Real<S>
void write_field(std::ostream& out, const S& v) {
    write_raw(out, FieldKind::scalar);
    write_raw(out, v);
}

template <class S, class State>
requires StateAggregate<State>
void write_field(std::ostream& out, const State& nested) {
    write_raw(out, FieldKind::state);
    write_fields<S>(out, nested);
}

inline void expect_kind(std::istream& in, FieldKind kind, std::string_view name) {
    const auto got = read_raw<FieldKind>(in, concat("the kind of field '", name, "'"));
    if (got != kind)
        throw CorruptState(concat("Saved state field '", name, "' has kind ", static_cast<int>(got),
                                  ", expected ", static_cast<int>(kind)));
}

template <class S>
void read_field(std::istream& in, std::string_view name, std::int64_t& v) {
    expect_kind(in, FieldKind::integer, name);
    v = read_raw<std::int64_t>(in, concat("field '", name, "'"));
}

template <class S>
requires Real<S>
void read_field(std::istream& in, std::string_view name, S& v) {
    expect_kind(in, FieldKind::scalar, name);
    v = read_raw<S>(in, concat("field '", name, "'"));
    if (!std::isfinite(v))
        throw CorruptState(concat("Saved state field '", name, "' is not finite"));
}

template <class S, class Dense>
requires std::is_base_of_v<Eigen::PlainObjectBase<Dense>, Dense>
void read_field(std::istream& in, std::string_view name, Dense& m) {
    using T = typename Dense::Scalar;
    expect_kind(in, matrix_kind<S, Dense>(), name);
    const auto rows = read_raw<std::int64_t>(in, concat("the rows of field '", name, "'"));
    const auto cols = read_raw<std::int64_t>(in, concat("the cols of field '", name, "'"));
    if (rows != m.rows() || cols != m.cols())
        throw CorruptState(concat("Saved state field '", name, "' has shape ", rows, "x", cols,
                                  ", the optimizer expects ", m.rows(), "x", m.cols()));
    const auto bytes = static_cast<std::streamsize>(sizeof(T) * static_cast<std::size_t>(m.size()));
    if (bytes > 0 && !in.read(reinterpret_cast<char*>(m.data()), bytes))
        throw CorruptState(concat("Saved state is truncated in field '", name, "'"));
    if constexpr (is_stored_real_v<T>)
        if (!all_finite(m))
            throw CorruptState(concat("Saved state field '", name, "' holds non-finite values"));
}

template <class S, class State>
requires StateAggregate<State>
void read_field(std::istream& in, std::string_view name, State& nested) {
    expect_kind(in, FieldKind::state, name);
    read_fields<S>(in, name, nested);
}

template <class S, class State>
requires StateAggregate<State>
void write_fields(std::ostream& out, const State& state) {
    write_raw(out, static_cast<std::uint32_t>(State::field_names.size()));
    for_each_field(state, [&](std::string_view field, const auto& value) {
        write_string(out, field);
        write_field<S>(out, value);
    });
}

/// Reads the fields of `state` (a state called `name`, for the messages) in
/// place, then runs its validate(); the caller keeps a copy to fall back on.
template <class S, class State>
requires StateAggregate<State>
void read_fields(std::istream& in, std::string_view name, State& state) {
    const auto count = read_raw<std::uint32_t>(in, "the field count");
    if (count != State::field_names.size())
        throw CorruptState(concat("Saved state has ", count, " fields, ", name, " has ",
                                  State::field_names.size()));
    for_each_field(state, [&](std::string_view field, auto& value) {
        const std::string saved_field = read_string(in, "a field name");
        if (saved_field != field)
            throw CorruptState(concat("Saved state has field '", saved_field, "' where ", name,
                                      " expects '", field, "'"));
        read_field<S>(in, field, value);
    });
    if constexpr (requires { state.validate(); })
        state.validate();
}

/// Throws CorruptState "field '<field>' <what>" unless ok; for states' validate().
inline void require_state(bool ok, std::string_view field, std::string_view what) {
    if (!ok)
        throw CorruptState(concat("Saved state field '", field, "' ", what));
}

/// A step count that the optimizers can increment and use as an exponent.
inline void require_step_count(std::int64_t step) {
    require_state(step >= 0 && step <= (std::int64_t{1} << 53), "step",
                  "must be a step count in [0, 2^53]");
}

template <class T>
bool bitwise_equal_field(const T& a, const T& b) {
    if constexpr (StateAggregate<T>) {
        return bitwise_equal(a, b);
    } else if constexpr (std::is_base_of_v<Eigen::PlainObjectBase<T>, T>) {
        return a.rows() == b.rows() && a.cols() == b.cols()
               && (a.size() == 0
                   || std::memcmp(a.data(), b.data(),
                                  sizeof(typename T::Scalar) * static_cast<std::size_t>(a.size()))
                          == 0);
    } else {
        return std::memcmp(&a, &b, sizeof(T)) == 0;
    }
}

}  // namespace detail

/// Two states are bit-identical: same shapes and the same bytes in every field.
template <class State>
requires StateAggregate<State>
bool bitwise_equal(const State& a, const State& b) {
    bool equal = true;
    auto ra = a.fields();
    auto rb = b.fields();
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((equal = equal && detail::bitwise_equal_field(std::get<I>(ra), std::get<I>(rb))), ...);
    }
    (std::make_index_sequence<State::field_names.size()>{});
    return equal;
}

namespace detail {
template <class S, class T>
void check_field(std::string_view field, const T& value, const T& reference) {
    if constexpr (StateAggregate<T>) {
        check_state_fields<S>(value, reference);
    } else if constexpr (std::is_base_of_v<Eigen::PlainObjectBase<T>, T>) {
        if (value.rows() != reference.rows() || value.cols() != reference.cols())
            throw CorruptState(concat("State field '", field, "' has shape ", value.rows(), "x",
                                      value.cols(), ", the optimizer expects ", reference.rows(),
                                      "x", reference.cols()));
        if constexpr (is_stored_real_v<typename T::Scalar>)
            if (!all_finite(value))
                throw CorruptState(concat("State field '", field, "' holds non-finite values"));
    } else if constexpr (std::is_floating_point_v<T>) {
        if (!std::isfinite(value))
            throw CorruptState(concat("State field '", field, "' is not finite"));
    }
}

/// load's checks of every field of `state` against `reference`, then validate().
template <class S, class State>
requires StateAggregate<State>
void check_state_fields(const State& state, const State& reference) {
    auto values = state.fields();
    auto references = reference.fields();
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (check_field<S>(State::field_names[I], std::get<I>(values), std::get<I>(references)), ...);
    }
    (std::make_index_sequence<State::field_names.size()>{});
    if constexpr (requires { state.validate(); })
        state.validate();
}
}  // namespace detail

/// Checks a state built in memory as load_state checks a saved one: every field
/// (nested states too) shaped as in `reference`, the live state, and finite, and
/// the state's validate(). Throws CorruptState naming the field.
template <class S, class State>
requires StateAggregate<State>
void check_state(const State& state, const State& reference) {
    detail::check_state_fields<S>(state, reference);
}

/// Writes `state` of the optimizer called `name` in the format described above.
template <class S, class State>
requires StateAggregate<State>
void save_state(std::ostream& out, std::string_view name, const State& state) {
    out.write(detail::state_magic, sizeof detail::state_magic);
    detail::write_raw(out, detail::state_format_version);
    detail::write_raw(out, static_cast<std::uint32_t>(sizeof(S)));
    detail::write_string(out, name);
    detail::write_fields<S>(out, state);
    if (!out)
        throw Error(detail::concat("Could not write the state of ", name));
}

/// Reads a state saved by save_state into `state`, whose current shapes are the
/// ones expected. All or nothing: on any mismatch throws CorruptState and leaves
/// `state` as it was.
template <class S, class State>
requires StateAggregate<State>
void load_state(std::istream& in, std::string_view name, State& state) {
    using detail::concat;
    char magic[sizeof detail::state_magic];
    if (!in.read(magic, sizeof magic) || std::memcmp(magic, detail::state_magic, sizeof magic) != 0)
        throw CorruptState("Saved state does not start with the scaltra magic bytes");
    const auto version = detail::read_raw<std::uint32_t>(in, "the format version");
    if (version != detail::state_format_version)
        throw CorruptState(concat("Saved state has format version ", version, ", this build reads ",
                                  detail::state_format_version));
    const auto scalar_size = detail::read_raw<std::uint32_t>(in, "the scalar size");
    if (scalar_size != sizeof(S))
        throw CorruptState(
            concat("Saved state holds ", scalar_size, "-byte scalars, expected ", sizeof(S)));
    const std::string saved_name = detail::read_string(in, "the optimizer name");
    if (saved_name != name)
        throw CorruptState(
            concat("Saved state belongs to optimizer '", saved_name, "', not '", name, "'"));
    State loaded = state;  // shapes to check against; replaces `state` only when complete
    detail::read_fields<S>(in, name, loaded);
    state = std::move(loaded);
}

}  // namespace scaltra
