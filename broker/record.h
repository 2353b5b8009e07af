/*
 * The records of records.h as descriptor tables, and what is made from
 * them without knowing the store: JSON views and API input. Pure.
 */
#ifndef NESTOR_RECORD_H
#define NESTOR_RECORD_H

#include "records.h"

#include <json-c/json.h>
#include <stddef.h>

enum rec_kind { REC_TEXT, REC_UINT, REC_INT, REC_I64, REC_U64, REC_BOOL };
enum rec_api { REC_API_NO, REC_API_OPT, REC_API_REQ, REC_API_SET };

struct rec_field {
	const char *key;
	enum rec_kind kind;
	size_t off, size;
	enum rec_api api;
	uint64_t max;
	const char *dflt; /* "" none */
	const char *cli;  /* nestorctl's option (NULL none) */
	unsigned flags;	  /* REC_SECRET, REC_PATH, REC_FILE, REC_V_* */
};

struct rec_table {
	const char *name; /* the store's table */
	const struct rec_field *fields;
	size_t n; /* fields[0] is the key */
};

extern const struct rec_table rec_images, rec_apps, rec_sessions, rec_warm, rec_audit;

/* Every field but secret ones, for the views argument of rec_json. */
#define REC_ALL 0xffffffffu

/*
 * REC as a JSON object of its non-secret fields: those in the views ALWAYS
 * (whatever they hold), those in IF_SET when set, and those in SPARSE as a
 * table row would show them (text when non-empty, numbers always). A new
 * reference.
 */
json_object *rec_json(const struct rec_table *t, const void *rec, unsigned always, unsigned if_set,
		      unsigned sparse);

/* A number into F's member of REC; a value out of its range (an INT: negative) reads as 0. */
void rec_set_number(const struct rec_field *f, void *rec, int64_t v);
/* Text fields of REC left empty get their default. */
void rec_defaults(const struct rec_table *t, void *rec);

/*
 * Copy the fields of T present in O (already validated against the same
 * table: strings within size, numbers within max) into REC. CREATE: text
 * fields left empty get their default.
 */
void rec_from_json(const struct rec_table *t, json_object *o, void *rec, bool create);

#endif
