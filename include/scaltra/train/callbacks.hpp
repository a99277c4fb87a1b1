// Ready-made callbacks for minimize (and the training drivers built on it).
// Each is a small class with one or two hooks; see hooks.hpp for the hooks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <ostream>
#include <string>

#include "../core/error.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"
#include "progress.hpp"

namespace scaltra {

namespace detail {
/// Restores a stream's format flags and precision when it goes out of scope.
class FormatGuard {
public:
    explicit FormatGuard(std::ostream& out)
        : out_(out), flags_(out.flags()), precision_(out.precision()) {}
    ~FormatGuard() {
        out_.flags(flags_);
        out_.precision(precision_);
    }
    FormatGuard(const FormatGuard&) = delete;
    FormatGuard& operator=(const FormatGuard&) = delete;

private:
    std::ostream& out_;
    std::ios_base::fmtflags flags_;
    std::streamsize precision_;
};
}  // namespace detail

/// Prints "step N  loss L  |g| G" every `every` steps (L and G as the step saw them,
/// at the point it started from).
class PrintLoss {
public:
    explicit PrintLoss(std::ostream& out = std::cout, std::int64_t every = 1)
        : out_(&out), every_(every) {
        detail::require_positive("every", every_);
    }

    template <class Opt, class S>
    void on_step(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) const {
        if (p.iteration % every_ != 0)
            return;
        *out_ << "step " << p.iteration << "  loss " << p.loss << "  |g| " << p.gradient_norm
              << '\n';
    }

private:
    std::ostream* out_;
    std::int64_t every_;
};

/// A one-line progress bar: percentage of the iteration budget, steps per second,
/// time to go and the latest loss, redrawn at most ten times a second.
class ProgressBar {
public:
    explicit ProgressBar(std::ostream& out = std::cerr, int width = 30)
        : out_(&out), width_(width) {
        detail::require_positive("width", width_);
    }

    template <class Opt, class S>
    void on_step(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        if (p.elapsed_seconds - last_draw_ < 0.1 && p.iteration != p.max_iterations)
            return;
        last_draw_ = p.elapsed_seconds;
        draw(p.iteration, p.max_iterations, p.elapsed_seconds, static_cast<double>(p.loss));
    }

    template <class Opt, class S>
    void on_end(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        draw(p.iteration, p.max_iterations, p.elapsed_seconds, static_cast<double>(p.loss));
        *out_ << '\n';
    }

private:
    void draw(std::int64_t done, std::int64_t total, double seconds, double loss) {
        const double fraction =
            total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1;
        const int filled = static_cast<int>(fraction * width_);
        const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
        const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
        const detail::FormatGuard keep_format(*out_);
        *out_ << '\r' << '[' << std::string(static_cast<std::size_t>(filled), '=')
              << std::string(static_cast<std::size_t>(width_ - filled), ' ') << "] " << std::setw(3)
              << static_cast<int>(100 * fraction) << "%  " << std::fixed << std::setprecision(1)
              << rate << " it/s  ETA " << static_cast<std::int64_t>(eta) << " s  loss "
              << std::scientific << std::setprecision(4) << loss << std::flush;
    }

    std::ostream* out_;
    int width_;
    double last_draw_ = -1;
};

/// Stops when the epoch loss has not improved by more than `min_delta` for
/// `patience` epochs in a row.
class EarlyStopAtMinLoss {
public:
    explicit EarlyStopAtMinLoss(std::int64_t patience = 10, double min_delta = 0)
        : patience_(patience), min_delta_(min_delta) {
        detail::require_positive("patience", patience_);
        detail::require_nonnegative("min_delta", min_delta_);
    }

    template <class Opt, class S>
    bool on_epoch_end(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        const auto loss = static_cast<double>(p.epoch_loss);
        if (loss < best_ - min_delta_) {
            best_ = loss;
            bad_epochs_ = 0;
            return false;
        }
        return ++bad_epochs_ >= patience_;
    }

    double best_loss() const { return best_; }

private:
    std::int64_t patience_;
    double min_delta_;
    double best_ = std::numeric_limits<double>::infinity();
    std::int64_t bad_epochs_ = 0;
};

/// Keeps the point with the lowest loss seen by any objective call.
template <Real S>
class KeepBest {
public:
    template <class Opt>
    void on_evaluate(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>& x,
                     const Eigen::Ref<Vec<S>>&) {
        if (!(p.loss < best_loss_))
            return;
        best_loss_ = p.loss;
        best_ = x;  // reallocates only when the size changes
    }

    const Vec<S>& point() const { return best_; }
    S loss() const { return best_loss_; }

private:
    Vec<S> best_;
    S best_loss_ = std::numeric_limits<S>::infinity();
};

/// Stops once the run has taken `seconds` of wall time.
class TimeLimit {
public:
    explicit TimeLimit(double seconds) : seconds_(seconds) {
        detail::require_positive("seconds", seconds_);
    }

    template <class Opt, class S>
    bool on_step(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) const {
        return p.elapsed_seconds >= seconds_;
    }

private:
    double seconds_;
};

/// Rescales every gradient whose ℓ₂ norm exceeds `max_norm` to that norm
/// (torch.nn.utils.clip_grad_norm_), before the optimizer sees it.
class GradientClipByNorm {
public:
    explicit GradientClipByNorm(double max_norm) : max_norm_(max_norm) {
        detail::require_positive("max_norm", max_norm_);
    }

    template <class Opt, class S>
    void on_evaluate(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&,
                     Eigen::Ref<Vec<S>> grad) const {
        if (static_cast<double>(p.gradient_norm) > max_norm_)
            grad *= static_cast<S>(max_norm_ / static_cast<double>(p.gradient_norm));
    }

private:
    double max_norm_;
};

/// Writes "iteration,loss,gradient_norm,elapsed_seconds" for every `every`-th step
/// as CSV, to a file it opens (and truncates) or to a stream it is given.
class CsvLogger {
public:
    explicit CsvLogger(const std::string& path, std::int64_t every = 1) : every_(every) {
        detail::require_positive("every", every_);  // before the file is truncated
        file_ = std::make_unique<std::ofstream>(path);
        if (!*file_)
            throw Error(detail::concat("CsvLogger: cannot open '", path, "' for writing"));
        out_ = file_.get();
    }
    explicit CsvLogger(std::ostream& out, std::int64_t every = 1) : every_(every), out_(&out) {
        detail::require_positive("every", every_);
    }

    template <class Opt, class S>
    void on_begin(const Opt&, const Progress<S>&, const Eigen::Ref<const Vec<S>>&) {
        *out_ << "iteration,loss,gradient_norm,elapsed_seconds\n";
    }

    template <class Opt, class S>
    void on_step(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        if (p.iteration % every_ != 0)
            return;
        const detail::FormatGuard keep_format(*out_);
        *out_ << p.iteration << ',' << std::setprecision(std::numeric_limits<S>::max_digits10)
              << p.loss << ',' << p.gradient_norm << ',' << std::setprecision(6)
              << p.elapsed_seconds << '\n';
    }

    template <class Opt, class S>
    void on_end(const Opt&, const Progress<S>&, const Eigen::Ref<const Vec<S>>&) {
        out_->flush();
    }

private:
    std::int64_t every_;
    std::unique_ptr<std::ofstream> file_;
    std::ostream* out_ = nullptr;
};

}  // namespace scaltra
