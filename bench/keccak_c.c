/* Times the bench kit's C Keccak-256 (bench/kit/keccak256.h) on a buffer of --bytes, for bench/run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kit/keccak256.h"

int main(int argc, char **argv) {
    size_t size = argc > 1 ? (size_t)atol(argv[1]) : 500;
    long iterations = argc > 2 ? atol(argv[2]) : 200000;
    uint8_t *input = malloc(size);
    uint8_t out[32] = {0};
    memset(input, 0xA3, size);
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < iterations; i++) {
        input[i % size] += 1;
        keccak256(input, size, out);
        input[0] ^= out[0];
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double ns = ((end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec)) / iterations;
    printf("keccak: %zu bytes, %.0f ns per hash\n", size, ns);
    free(input);
    return 0;
}
