/* Descriptor tables made from records.h, and the JSON made from them. Pure. */
#include "record.h"

#include <stdio.h>
#include <string.h>

#define FIELD(S, m, key, kind, api, max, dflt, cli, flags)                                         \
	{key,                                                                                      \
	 REC_##kind,                                                                               \
	 offsetof(struct S, m),                                                                    \
	 sizeof(((struct S *)0)->m),                                                               \
	 REC_API_##api,                                                                            \
	 max,                                                                                      \
	 dflt,                                                                                     \
	 cli,                                                                                      \
	 flags},

#define IMG(m, kind, size, api, max, dflt, cli, flags)                                             \
	FIELD(db_image, m, #m, kind, api, max, dflt, cli, flags)
#define RDP(m, kind, size, api, max, dflt, cli, flags)                                             \
	FIELD(db_image, rdp.m, DB_RDP_KEY_##m, kind, api, max, dflt, cli, flags)
#define APP(m, kind, size, api, max, dflt, cli, flags)                                             \
	FIELD(db_app, m, #m, kind, api, max, dflt, cli, flags)
#define SES(m, kind, size, flags) FIELD(db_session, m, #m, kind, NO, 0, "", NULL, flags)
#define WRM(m, kind, size, flags) FIELD(db_warm, m, #m, kind, NO, 0, "", NULL, flags)
#define AUD(m, kind, size, flags) FIELD(db_audit, m, #m, kind, NO, 0, "", NULL, flags)

static const struct rec_field image_fields[] = {DB_IMAGE_FIELDS(IMG) DB_RDP_FIELDS(RDP)};
static const struct rec_field app_fields[] = {DB_APP_FIELDS(APP)};
static const struct rec_field session_fields[] = {DB_SESSION_FIELDS(SES)};
static const struct rec_field warm_fields[] = {DB_WARM_FIELDS(WRM)};
static const struct rec_field audit_fields[] = {DB_AUDIT_FIELDS(AUD)};

#define TABLE(n, f)                                                                                \
	{                                                                                          \
		n, f, sizeof(f) / sizeof(f[0])                                                     \
	}
const struct rec_table rec_images = TABLE("images", image_fields);
const struct rec_table rec_apps = TABLE("apps", app_fields);
const struct rec_table rec_sessions = TABLE("sessions", session_fields);
const struct rec_table rec_warm = TABLE("warm", warm_fields);
const struct rec_table rec_audit = TABLE("audit", audit_fields);

/* Whether F holds something in REC (non-empty text, non-zero number). */
static bool rec_is_set(const struct rec_field *f, const void *rec)
{
	const char *p = (const char *)rec + f->off;
	switch (f->kind) {
	case REC_TEXT:
		return p[0] != '\0';
	case REC_UINT:
		return *(const unsigned *)p != 0;
	case REC_INT:
		return *(const int *)p != 0;
	case REC_I64:
		return *(const int64_t *)p != 0;
	case REC_U64:
		return *(const uint64_t *)p != 0;
	case REC_BOOL:
		return *(const bool *)p;
	}
	return false;
}

static json_object *value_json(const struct rec_field *f, const void *rec)
{
	const char *p = (const char *)rec + f->off;
	switch (f->kind) {
	case REC_TEXT:
		return json_object_new_string_len(p, (int)strnlen(p, f->size));
	case REC_UINT:
		return json_object_new_int64(*(const unsigned *)p);
	case REC_INT:
		return json_object_new_int64(*(const int *)p);
	case REC_I64:
		return json_object_new_int64(*(const int64_t *)p);
	case REC_U64:
		return json_object_new_int64((int64_t) * (const uint64_t *)p);
	case REC_BOOL:
		return json_object_new_int(*(const bool *)p);
	}
	return NULL;
}

static bool in(const struct rec_field *f, unsigned views)
{
	return views == REC_ALL || (f->flags & views);
}

json_object *rec_json(const struct rec_table *t, const void *rec, unsigned always, unsigned if_set,
		      unsigned sparse)
{
	json_object *o = json_object_new_object();
	for (size_t i = 0; i < t->n; i++) {
		const struct rec_field *f = &t->fields[i];
		if (f->flags & REC_SECRET)
			continue;
		bool set = rec_is_set(f, rec);
		bool show = in(f, always) || (in(f, if_set) && set) ||
			    (in(f, sparse) && (set || f->kind != REC_TEXT));
		if (show)
			json_object_object_add(o, f->key, value_json(f, rec));
	}
	return o;
}

void rec_set_number(const struct rec_field *f, void *rec, int64_t v)
{
	char *p = (char *)rec + f->off;
	switch (f->kind) {
	case REC_TEXT:
		break;
	case REC_INT:
		*(int *)p = v < 0 || v > 0x7fffffff ? 0 : (int)v; /* pids: never negative */
		break;
	case REC_UINT:
		*(unsigned *)p = v < 0 || v > 0xffffffffLL ? 0 : (unsigned)v;
		break;
	case REC_I64:
		*(int64_t *)p = v;
		break;
	case REC_U64:
		*(uint64_t *)p = v < 0 ? 0 : (uint64_t)v;
		break;
	case REC_BOOL:
		*(bool *)p = v != 0;
		break;
	}
}

void rec_defaults(const struct rec_table *t, void *rec)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct rec_field *f = &t->fields[i];
		char *p = (char *)rec + f->off;
		if (f->kind == REC_TEXT && !p[0] && f->dflt[0])
			snprintf(p, f->size, "%s", f->dflt);
	}
}

void rec_from_json(const struct rec_table *t, json_object *o, void *rec, bool create)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct rec_field *f = &t->fields[i];
		char *p = (char *)rec + f->off;
		json_object *v;
		bool given = f->api != REC_API_NO && json_object_object_get_ex(o, f->key, &v) &&
			     !json_object_is_type(v, json_type_null);
		if (given && f->kind == REC_TEXT)
			snprintf(p, f->size, "%s", json_object_get_string(v));
		else if (given)
			rec_set_number(f, rec, json_object_get_int64(v));
	}
	if (create)
		rec_defaults(t, rec);
}
