/* A record's and a source's fingerprint: XXH3-64 (xxHash, from the system's header-only
 * libxxhash-dev: inlined, so the extension links no library for it). Fast enough to run on every
 * byte a pack reads and writes (bench/fingerprint_cost.py); not a cryptographic hash: it proves
 * that bytes were not damaged or mixed up, not that nobody forged them. */
#ifndef FASTREC_FINGERPRINT_H
#define FASTREC_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

uint64_t fr_fingerprint(const void *data, size_t len);

#endif
