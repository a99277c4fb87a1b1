// Ready-made callbacks for minimize (and the training drivers built on it).
// Each is a small class with one or two hooks; see hooks.hpp for the hooks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

#include "../core/error.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"
#include "../optim/clip.hpp"
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

namespace detail {
/// Whether `out` is std::cout, std::cerr or std::clog and its file descriptor is
/// a terminal. Any other stream (a file, a string) is not one.
inline bool writes_to_terminal(const std::ostream& out) {
#if __has_include(<unistd.h>)
    if (&out == &std::cout)
        return ::isatty(STDOUT_FILENO) == 1;
    if (&out == &std::cerr || &out == &std::clog)
        return ::isatty(STDERR_FILENO) == 1;
#else
    (void)out;
#endif
    return false;
}
}  // namespace detail

/// A one-line progress bar: share of the iteration budget, steps per second,
/// time to go and the running loss (an exponential average over about the last
/// 50 steps, bias-corrected as Adam's moments). Under `fit` each epoch ends with a
/// summary line of its metrics.
///
/// On a terminal the bar is redrawn in place, at most ten times a second. Written
/// to a log (a file, a pipe, `| tee`, CI) it prints whole lines only: under `fit`
/// the epoch summaries, under `minimize` the bar at each tenth of the budget; and
/// in both the bar where a run ends between those lines.
class ProgressBar {
public:
    enum class Style {
        automatic,  ///< `redraw` when the stream is a terminal (see below), else `lines`
        redraw,     ///< one line rewritten in place with '\r'
        lines,      ///< whole lines, no '\r'
    };

    /// `automatic` redraws only on std::cout, std::cerr or std::clog whose file
    /// descriptor is a terminal (isatty).
    explicit ProgressBar(std::ostream& out = std::cerr, Style style = Style::automatic,
                         int width = 30)
        : out_(&out),
          redraw_(style == Style::redraw
                  || (style == Style::automatic && detail::writes_to_terminal(out))),
          width_(width) {
        detail::require_positive("width", width_);
    }

    /// Whether the bar is redrawn in place (else it prints whole lines).
    bool redraws() const { return redraw_; }

    template <class Opt, class S>
    void on_begin(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        first_iteration_ = p.iteration;
        summary_iteration_ = -1;
        average_ = 0;
        weight_ = 0;
        last_draw_ = -1;
    }

    template <class Opt, class S>
    void on_step(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        if (std::isfinite(p.loss)) {
            average_ = kDecay * average_ + (1 - kDecay) * static_cast<double>(p.loss);
            weight_ = kDecay * weight_ + (1 - kDecay);
        }
        if (!redraw_) {
            // A line at each tenth of minimize's budget; fit's lines are its epochs.
            if (p.max_epochs == 0 && p.max_iterations > 0
                && (10 * p.iteration) / p.max_iterations
                       != (10 * (p.iteration - 1)) / p.max_iterations) {
                emit(bar(p), true);
                summary_iteration_ = p.iteration;
            }
            return;
        }
        if (p.elapsed_seconds - last_draw_ < 0.1 && p.iteration != p.max_iterations)
            return;
        last_draw_ = p.elapsed_seconds;
        emit(bar(p), false);
    }

    template <class Opt, class S>
    void on_epoch_end(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        if (p.max_epochs == 0)
            return;  // minimize's epochs are only groups of steps
        std::ostringstream line;
        line << "epoch " << p.epoch << '/' << p.max_epochs << "  loss " << std::setprecision(4)
             << p.epoch_loss;
        auto metric = [&](bool given, const char* name, double loss, double accuracy) {
            if (given)
                line << "  " << name << " loss " << std::setprecision(4) << loss << " acc "
                     << std::fixed << std::setprecision(2) << 100 * accuracy << '%'
                     << std::defaultfloat;
        };
        metric(p.has_validation, "validation", p.metrics.validation_loss,
               p.metrics.validation_accuracy);
        metric(p.has_test, "test", p.metrics.test_loss, p.metrics.test_accuracy);
        line << "  " << std::fixed << std::setprecision(1) << p.elapsed_seconds << " s";
        emit(line.str(), true);
        summary_iteration_ = p.iteration;
    }

    template <class Opt, class S>
    void on_end(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        if (p.iteration != summary_iteration_)  // steps after the last summary (or no summaries)
            emit(bar(p), true);
    }

private:
    static constexpr double kDecay = 0.98;

    template <class S>
    std::string bar(const Progress<S>& p) const {
        // The bar shows the whole budget; rate and ETA count this run's steps only
        // (a resumed fit starts at initial_epoch's iteration).
        const double fraction = p.max_iterations > 0 ? static_cast<double>(p.iteration)
                                                           / static_cast<double>(p.max_iterations)
                                                     : 1;
        const int filled = static_cast<int>(fraction * width_);
        const std::int64_t done = p.iteration - first_iteration_;
        const double rate =
            p.elapsed_seconds > 0 ? static_cast<double>(done) / p.elapsed_seconds : 0;
        const double eta =
            rate > 0 ? static_cast<double>(p.max_iterations - p.iteration) / rate : 0;
        const double loss = weight_ > 0 ? average_ / weight_ : static_cast<double>(p.loss);
        std::ostringstream line;
        if (p.max_epochs > 0)
            line << "epoch " << p.epoch + 1 << '/' << p.max_epochs << ' ';
        line << '[' << std::string(static_cast<std::size_t>(filled), '=')
             << std::string(static_cast<std::size_t>(width_ - filled), ' ') << "] " << std::setw(3)
             << static_cast<int>(100 * fraction) << "%  " << std::fixed << std::setprecision(1)
             << rate << " it/s  ETA " << static_cast<std::int64_t>(eta) << " s  loss "
             << std::scientific << std::setprecision(4) << loss;
        return line.str();
    }

    /// Rewrites the current line (padding over a longer previous one), and ends
    /// it when `newline`; without redrawing, prints whole lines only.
    void emit(const std::string& line, bool newline) {
        if (!redraw_) {
            *out_ << line << '\n' << std::flush;
            return;
        }
        *out_ << '\r' << line;
        if (line.size() < line_width_)
            *out_ << std::string(line_width_ - line.size(), ' ');
        line_width_ = newline ? 0 : line.size();
        if (newline)
            *out_ << '\n';
        *out_ << std::flush;
    }

    std::ostream* out_;
    bool redraw_;
    int width_;
    std::int64_t first_iteration_ = 0;
    std::int64_t summary_iteration_ = -1;  // where the last whole line was printed
    double average_ = 0, weight_ = 0;      // the running loss is average_ / weight_
    double last_draw_ = -1;
    std::size_t line_width_ = 0;  // of the line being redrawn (0: none open)
};

/// Which epoch loss EarlyStopAtMinLoss watches.
enum class Monitor {
    train_loss,       ///< Progress::epoch_loss, the mean step loss of the epoch
    validation_loss,  ///< Progress::metrics.validation_loss (fit with a validation set)
};

/// Stops when the monitored epoch loss has not improved by more than `min_delta`
/// for `patience` epochs in a row (a NaN loss counts as no improvement). Starts
/// afresh in every run; monitoring the validation loss of a run without a
/// validation set throws InvalidArgument before the first step.
class EarlyStopAtMinLoss {
public:
    explicit EarlyStopAtMinLoss(std::int64_t patience = 10, double min_delta = 0,
                                Monitor monitor = Monitor::train_loss)
        : patience_(patience), min_delta_(min_delta), monitor_(monitor) {
        detail::require_positive("patience", patience_);
        detail::require_nonnegative("min_delta", min_delta_);
    }

    template <class Opt, class S>
    void on_begin(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        if (monitor_ == Monitor::validation_loss && !p.has_validation)
            throw InvalidArgument(
                "EarlyStopAtMinLoss: monitors the validation loss, but the run has no "
                "validation set");
        best_ = std::numeric_limits<double>::infinity();
        bad_epochs_ = 0;
    }

    template <class Opt, class S>
    bool on_epoch_end(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        const double loss = monitor_ == Monitor::train_loss ? static_cast<double>(p.epoch_loss)
                                                            : p.metrics.validation_loss;
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
    Monitor monitor_;
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
/// (torch.nn.utils.clip_grad_norm_), before the optimizer sees it: Clip's rule
/// (optim/clip.hpp; a norm that overflows is computed again, without overflow).
class GradientClipByNorm {
public:
    explicit GradientClipByNorm(double max_norm) : clip_(Clip::by_global_norm(max_norm)) {
        detail::require_positive("max_norm", max_norm);
    }

    template <class Opt, class S>
    void on_evaluate(const Opt&, const Progress<S>&, const Eigen::Ref<const Vec<S>>&,
                     Eigen::Ref<Vec<S>> grad) const {
        clip_.apply<S>(grad);
    }

private:
    Clip clip_;
};

namespace detail {
/// Where a CSV logger writes: a file it opens (truncated, or appended to so that
/// a resumed run continues its log: the header is then written only to an empty
/// file; rows logged after the checkpoint a run resumes from appear twice) or a
/// stream it is given.
class CsvOutput {
public:
    CsvOutput(const std::string& path, bool append) {
        std::error_code ec;
        const bool has_content = append && std::filesystem::file_size(path, ec) > 0 && !ec;
        file_ = std::make_unique<std::ofstream>(path, append ? std::ios::app : std::ios::trunc);
        if (!*file_)
            throw Error(concat("CSV logger: cannot open '", path, "' for writing"));
        out_ = file_.get();
        header_ = !has_content;
    }
    explicit CsvOutput(std::ostream& out) : out_(&out) {}

    std::ostream& out() { return *out_; }
    /// Writes the header line unless it is appending to a file that has one.
    void header(std::string_view line) {
        if (header_)
            *out_ << line << '\n';
        header_ = false;
    }

private:
    std::unique_ptr<std::ofstream> file_;
    std::ostream* out_ = nullptr;
    bool header_ = true;
};
}  // namespace detail

/// Writes "iteration,loss,gradient_norm,elapsed_seconds" for every `every`-th step
/// as CSV, to a file it opens (truncated, or appended to) or to a stream it is given;
/// for a learned optimizer (one with `for_each_learned`) also a column per learned
/// quantity, after the step (SCALTRA: "tau:W1", "b_norm:W1", "step:W1", …).
class CsvLogger {
public:
    explicit CsvLogger(const std::string& path, std::int64_t every = 1, bool append = false)
        : every_(valid_every(every)), csv_(path, append) {}
    explicit CsvLogger(std::ostream& out, std::int64_t every = 1)
        : every_(valid_every(every)), csv_(out) {}

    template <class Opt, class S>
    void on_begin(const Opt& opt, const Progress<S>&, const Eigen::Ref<const Vec<S>>&) {
        std::string line = "iteration,loss,gradient_norm,elapsed_seconds";
        if constexpr (learned<Opt>)
            opt.for_each_learned([&](std::string_view name, double) {
                line += ',';
                line += name;
            });
        csv_.header(line);
    }

    template <class Opt, class S>
    void on_step(const Opt& opt, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        if (p.iteration % every_ != 0)
            return;
        std::ostream& out = csv_.out();
        const detail::FormatGuard keep_format(out);
        out << p.iteration << ',' << std::setprecision(std::numeric_limits<S>::max_digits10)
            << p.loss << ',' << p.gradient_norm << ',' << std::setprecision(6) << p.elapsed_seconds;
        if constexpr (learned<Opt>)
            opt.for_each_learned([&](std::string_view, double value) { out << ',' << value; });
        out << '\n';
    }

    template <class Opt, class S>
    void on_epoch_end(const Opt&, const Progress<S>&, const Eigen::Ref<const Vec<S>>&) {
        csv_.out().flush();  // whole lines on disk up to every epoch's end
    }

    template <class Opt, class S>
    void on_end(const Opt&, const Progress<S>&, const Eigen::Ref<const Vec<S>>&) {
        csv_.out().flush();
    }

private:
    template <class Opt>
    static constexpr bool learned = requires(const Opt& opt) {
        opt.for_each_learned([](std::string_view, double) {});
    };

    static std::int64_t valid_every(std::int64_t every) {
        detail::require_positive("every", every);  // before a file is truncated
        return every;
    }

    std::int64_t every_;
    detail::CsvOutput csv_;
};

/// Writes one CSV line per epoch: "epoch,iteration,train_loss,validation_loss,
/// validation_accuracy,test_loss,test_accuracy,elapsed_seconds"; the metrics of a
/// set fit was not given are left empty (a NaN the model produced is written "nan").
class EpochCsvLogger {
public:
    explicit EpochCsvLogger(const std::string& path, bool append = false) : csv_(path, append) {}
    explicit EpochCsvLogger(std::ostream& out) : csv_(out) {}

    template <class Opt, class S>
    void on_begin(const Opt&, const Progress<S>&, const Eigen::Ref<const Vec<S>>&) {
        csv_.header(
            "epoch,iteration,train_loss,validation_loss,validation_accuracy,test_loss,"
            "test_accuracy,elapsed_seconds");
    }

    template <class Opt, class S>
    void on_epoch_end(const Opt&, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) {
        std::ostream& out = csv_.out();
        const detail::FormatGuard keep_format(out);
        out << p.epoch << ',' << p.iteration << ','
            << std::setprecision(std::numeric_limits<double>::max_digits10)
            << static_cast<double>(p.epoch_loss);
        auto metric = [&](bool given, double v) {
            out << ',';
            if (given)
                out << v;
        };
        metric(p.has_validation, p.metrics.validation_loss);
        metric(p.has_validation, p.metrics.validation_accuracy);
        metric(p.has_test, p.metrics.test_loss);
        metric(p.has_test, p.metrics.test_accuracy);
        out << ',' << std::setprecision(6) << p.elapsed_seconds << '\n' << std::flush;
    }

private:
    detail::CsvOutput csv_;
};

}  // namespace scaltra
