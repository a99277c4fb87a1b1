// Fuzz target: the checkpoint loader (train/checkpoint.hpp), for a classic and a
// learned optimizer. The first byte picks Adam<float> over 20 parameters or
// SCALTRA<double> over a 4×4 weight and a bias; the rest is the file.
// load_checkpoint must throw CorruptState, leaving the parameters and the state
// as they were, or restore finite parameters and a state a step can use.
#include <cstdint>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>
#include <scaltra/train/checkpoint.hpp>

#include "fuzz_target.hpp"

namespace fuzzing {
namespace {

template <class Opt>
void load_checkpoint_into(Opt opt, const std::filesystem::path& path) {
    using S = typename Opt::Scalar;
    const scaltra::Index n = opt.layout().size();
    scaltra::Vec<S> w = scaltra::Vec<S>::Constant(n, S(0.5));
    const scaltra::Vec<S> w_before = w;
    const auto before = opt.state();
    try {
        const scaltra::CheckpointInfo info = scaltra::load_checkpoint(path, opt, w);
        if (info.epoch < 0 || info.iteration < 0 || !scaltra::detail::all_finite(w))
            fuzz_fail("load_checkpoint restored a negative count or non-finite parameters");
    } catch (const scaltra::CorruptState&) {
        if (w != w_before || !scaltra::bitwise_equal(opt.state(), before))
            fuzz_fail("a load_checkpoint that threw changed the parameters or the state");
        return;
    }
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 7);
    try {
        opt.step(w, quadratic);
    } catch (const scaltra::NonFinite&) {
    }
}

}  // namespace

void fuzz_checkpoint(std::span<const std::uint8_t> input) {
    if (input.empty())
        return;
    const auto path = scratch_file("checkpoint", as_chars(input.subspan(1)));
    if (input[0] % 2 == 0)
        load_checkpoint_into(scaltra::Adam<float>(20), path);
    else
        load_checkpoint_into(
            scaltra::Scaltra<double>(scaltra::Layout().add("W", 4, 4).add("b", 4)), path);
}

}  // namespace fuzzing

SCALTRA_FUZZ_ENTRY(fuzzing::fuzz_checkpoint)
