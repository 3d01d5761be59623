/*
 * Classic libpcap files (see pcap.h).
 *
 * File header (24 bytes):   magic 0xa1b2c3d4, version 2.4, thiszone 0,
 *                           sigfigs 0, snaplen, linktype
 * Record header (16 bytes): seconds, microseconds, captured length,
 *                           original length
 *
 * A record longer than the snapshot length keeps its first snaplen bytes
 * and its original length, as libpcap does; plexusctl's snaplen is larger
 * than any frame, so its records are always whole.
 */

#include <errno.h>

#include "pcap.h"

#define PCAP_MAGIC_USEC 0xa1b2c3d4u
#define PCAP_VERSION_MAJOR 2u
#define PCAP_VERSION_MINOR 4u

static uint8_t *put_le16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        return p + 2;
}

static uint8_t *put_le32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
        return p + 4;
}

/**
 * pcap_write_header() - start a capture file
 * @f:          the stream, at its start
 * @snaplen:    the longest record to keep whole
 * @linktype:   what the records hold, e.g. PCAP_LINKTYPE_USER0
 *
 * Return: 0, or -EIO if the stream failed.
 */
int pcap_write_header(FILE *f, uint32_t snaplen, uint32_t linktype) {
        uint8_t h[24], *p = h;

        p = put_le32(p, PCAP_MAGIC_USEC);
        p = put_le16(p, PCAP_VERSION_MAJOR);
        p = put_le16(p, PCAP_VERSION_MINOR);
        p = put_le32(p, 0);             /* thiszone: timestamps are UTC */
        p = put_le32(p, 0);             /* sigfigs: always 0 */
        p = put_le32(p, snaplen);
        put_le32(p, linktype);
        return fwrite(h, 1, sizeof(h), f) == sizeof(h) ? 0 : -EIO;
}

/**
 * pcap_write_record() - append one record
 * @f:          the stream, after the file header
 * @snaplen:    as given to pcap_write_header()
 * @realtime_usec: when the record was captured, microseconds since the epoch
 * @chunks:     the record's bytes, in pieces
 * @n_chunks:   how many pieces
 *
 * Return: 0, or -EIO if the stream failed.
 */
int pcap_write_record(FILE *f, uint32_t snaplen, uint64_t realtime_usec, const PcapChunk *chunks,
                      size_t n_chunks) {
        uint8_t h[16], *p = h;
        size_t len = 0, left;

        for (size_t i = 0; i < n_chunks; i++)
                len += chunks[i].size;
        left = len < snaplen ? len : snaplen;

        /* Unsigned 32-bit seconds last until 2106. */
        p = put_le32(p, (uint32_t)(realtime_usec / 1000000u));
        p = put_le32(p, (uint32_t)(realtime_usec % 1000000u));
        p = put_le32(p, (uint32_t)left);
        put_le32(p, len > UINT32_MAX ? UINT32_MAX : (uint32_t)len);
        if (fwrite(h, 1, sizeof(h), f) != sizeof(h))
                return -EIO;

        for (size_t i = 0; i < n_chunks && left > 0; i++) {
                size_t n = chunks[i].size < left ? chunks[i].size : left;

                if (n > 0 && fwrite(chunks[i].data, 1, n, f) != n)
                        return -EIO;
                left -= n;
        }
        return 0;
}
