#pragma once

/*
 * Classic libpcap capture files, as `plexusctl capture` writes them.
 *
 * The format is the one of libpcap 2.4 (pcap-savefile(5), and
 * draft-ietf-opsawg-pcap), written here without libpcap: a 24-byte file
 * header, then per record a 16-byte record header and the captured bytes.
 * Every field is written little-endian, so the magic number reads as
 * d4 c3 b2 a1 on disk; readers take the byte order from it. Timestamps
 * have microsecond resolution.
 *
 * plexusctl records Plexus frames with link type LINKTYPE_USER0 (147),
 * one of the link types reserved for private use: each record is one
 * frame in the wire format of docs/protocol.md §2.1 (what the bytes hold
 * exactly is documented there, in §16, and in plexusctl(1)).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PCAP_LINKTYPE_USER0 147u
#define PCAP_SNAPLEN 262144u

/* One piece of a record; a record is written from several without copying. */
typedef struct PcapChunk {
        const void *data;
        size_t size;
} PcapChunk;

int pcap_write_header(FILE *f, uint32_t snaplen, uint32_t linktype);
int pcap_write_record(FILE *f, uint32_t snaplen, uint64_t realtime_usec, const PcapChunk *chunks,
                      size_t n_chunks);
