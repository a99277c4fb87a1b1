// Command-line and output helpers shared by the example programs: numbers from
// flags, output files, the message for a plot gnuplot did not write, and the
// mean ± std of a set of runs.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace examples {

/// `text` as a number in [lo, hi] (a whole one when `integer`); anything else
/// prints "program: flag needs …, got 'text'" and exits with status 2.
inline double parse_number(const char* program, const char* flag, const char* text, double lo,
                           double hi, bool integer = false) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v >= lo && v <= hi)
        || (integer && v != std::floor(v))) {
        std::fprintf(stderr, "%s: %s needs %s in [%g, %g], got '%s'\n", program, flag,
                     integer ? "an integer" : "a number", lo, hi, text);
        std::exit(2);
    }
    return v;
}

/// `path` opened for writing, or null after printing "program: cannot write path".
inline std::FILE* open_output(const char* program, const std::string& path) {
    std::FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr)
        std::fprintf(stderr, "%s: cannot write %s\n", program, path.c_str());
    return out;
}

/// Says that gnuplot did not write `path`, and how to get it.
inline void report_plot_failure(const char* program, const std::string& path) {
    std::fprintf(stderr,
                 "%s: gnuplot failed to write %s (is it installed? apt-get install gnuplot-nox)\n",
                 program, path.c_str());
}

/// Mean and sample standard deviation over runs (0 for one run).
struct Stat {
    double mean, std;
};
inline Stat summarize(const std::vector<double>& v) {
    double mean = 0;
    for (double x : v)
        mean += x;
    mean /= static_cast<double>(v.size());
    double var = 0;
    for (double x : v)
        var += (x - mean) * (x - mean);
    return {mean, v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : 0.0};
}

}  // namespace examples
