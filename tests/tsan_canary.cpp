// The tsan preset's own check: a data race in an OpenMP loop, built like the
// suite. The ctest entry passes only if ThreadSanitizer reports the race, so a
// preset that stops seeing races (the sanitizer not linked in, or options that
// silence its reports) fails instead of passing quietly.
#include <cstdio>

int main() {
    long sum = 0;
    // Two threads add to `sum` with no synchronisation: the race TSan must report.
#pragma omp parallel for num_threads(2) schedule(static)
    for (long i = 0; i < 1000; ++i)
        sum += i;
    std::printf("sum %ld\n", sum);
    return 0;
}
