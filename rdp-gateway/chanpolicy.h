/*
 * What may cross the two relayed static virtual channels, cliprdr
 * (MS-RDPECLIP) and rdpdr (MS-RDPEFS), between a user's client and their
 * legacy guest. Both ends are untrusted: the guest's user is its
 * administrator and can replace its RDP server. The channel layer hands over
 * one whole reassembled PDU at a time; these functions decide what is
 * forwarded in its place. Pure: no I/O, no FreeRDP calls; table-tested and
 * fuzzed in tests/unit/test_chanpolicy.c.
 *
 * Return convention of both filters (enum gw_chan_verdict):
 *   GW_CHAN_PASS     forward the input unchanged;
 *   GW_CHAN_DROP     forward nothing (a malformed PDU is always dropped);
 *   GW_CHAN_REPLACE  forward OUT[0..*OUTLEN) instead of the input;
 *   GW_CHAN_REPLY    forward nothing, send OUT[0..*OUTLEN) back to the sender.
 * *OUTLEN is set on every call (0 unless REPLACE or REPLY). No output is ever
 * longer than its input, so an OUT of LEN bytes is always enough; with less
 * room, a PDU that needed rewriting is dropped instead. PDU and OUT are
 * borrowed, must not overlap, and are not kept after the call.
 */
#ifndef NESTOR_GW_CHANPOLICY_H
#define NESTOR_GW_CHANPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One image's channel policy. */
struct gw_chan_policy {
	bool text_only;	    /* cliprdr: only text formats cross, no files, no locks */
	uint32_t max_bytes; /* cliprdr: largest clipboard data crossing (0 = no limit) */
	/* rdpdr: always, only drives (filesystem devices) are announced to the guest */
};

/* Which way a PDU travels: from the user's client to the guest, or back. */
enum gw_chan_dir { GW_CHAN_TO_GUEST, GW_CHAN_TO_USER };

enum gw_chan_verdict { GW_CHAN_PASS, GW_CHAN_DROP, GW_CHAN_REPLACE, GW_CHAN_REPLY };

/*
 * One cliprdr relay's state (one per user connection to a guest). Format
 * lists are read with long format names only once both sides' capabilities
 * said CB_USE_LONG_FORMAT_NAMES; until then short names, MS-RDPECLIP's
 * default for a side that sent no capabilities.
 */
struct gw_cliprdr_state {
	bool long_names[2]; /* the capabilities sent in each direction had the flag */
	uint8_t offered[2]; /* text formats last offered in each direction (text_only) */
};

void gw_cliprdr_init(struct gw_cliprdr_state *st);

/*
 * Filter cliprdr PDU (PDU, LEN) travelling in direction DIR under policy POL
 * (borrowed), updating ST. Under text_only a format list keeps only
 * CF_TEXT, CF_OEMTEXT, CF_UNICODETEXT and CF_LOCALE (REPLACE, names
 * emptied); a data request for a format not offered the other way, and any
 * file contents request, is answered with a failed response (REPLY); locks
 * and file contents responses are dropped. Clipboard data, or file
 * contents, over max_bytes become a failed response of the same type
 * (REPLACE). Anything else passes if it is well formed and may travel in
 * DIR; unknown message types are dropped.
 */
enum gw_chan_verdict gw_cliprdr_filter(struct gw_cliprdr_state *st,
				       const struct gw_chan_policy *pol, enum gw_chan_dir dir,
				       const uint8_t *pdu, size_t len, uint8_t *out, size_t outcap,
				       size_t *outlen);

#define GW_RDPDR_DEVICES_MAX 32 /* drives a user may share at once; more are not announced */

/* One rdpdr relay's state: the drives announced to the guest. */
struct gw_rdpdr_state {
	uint32_t id[GW_RDPDR_DEVICES_MAX];
	unsigned n;
};

void gw_rdpdr_init(struct gw_rdpdr_state *st);

/*
 * Filter rdpdr PDU (PDU, LEN) travelling in direction DIR, updating ST.
 * Towards the guest, a device list announce keeps only filesystem devices
 * (REPLACE, even when none remain) and their ids are remembered; a device
 * list remove forgets them. Towards the user, I/O requests and device
 * replies pass only for a remembered drive. Printer-component PDUs and
 * unknown components are dropped; other core PDUs pass.
 */
enum gw_chan_verdict gw_rdpdr_filter(struct gw_rdpdr_state *st, enum gw_chan_dir dir,
				     const uint8_t *pdu, size_t len, uint8_t *out, size_t outcap,
				     size_t *outlen);

#endif
