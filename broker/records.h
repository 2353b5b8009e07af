/*
 * The broker's records, each field listed once. The lists below make the C
 * structs here, and through record.c the store's columns, binds and row
 * reads, the API's body fields and JSON views, and nestorctl's options:
 * adding a field is one line.
 *
 * Records with API input (images, rdp policy, apps) use
 *   X(member, kind, size, api, max, dflt, cli, flags)
 * sessions, warm guests and audit entries use
 *   X(member, kind, size, flags)
 *
 *   member  the C member; its name is also the column, API and JSON key
 *           (rdp policy: key in the flags' REC_KEY_* table below)
 *   kind    TEXT (char[size]) | UINT | INT | I64 | U64 | BOOL
 *   api     NO (not given through the API) | OPT (optional on create) |
 *           REQ (required on create) | SET (optional, and changeable later)
 *   max     API bound: the longest text or the largest number
 *   dflt    text default when none is given ("" none)
 *   cli     nestorctl's --option for it (NULL none)
 *   flags   REC_SECRET never listed; REC_PATH nestorctl makes it absolute;
 *           REC_FILE nestorctl reads it from a file (never argv); view bits
 *           (sessions) choose the JSON views a field is in
 *
 * Pure: no I/O.
 */
#ifndef NESTOR_RECORDS_H
#define NESTOR_RECORDS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define REC_SECRET 0x01u
#define REC_PATH 0x02u
#define REC_FILE 0x04u
/* session views: the history (ended list); the live view always, when set, while the
 * guest is up (ready..disconnected: always, or when set), once ended */
#define REC_V_HIST 0x10u
#define REC_V_LIVE 0x20u
#define REC_V_SET 0x40u
#define REC_V_UP 0x80u
#define REC_V_UP_SET 0x100u
#define REC_V_ENDED 0x200u

/* clang-format off */
#define DB_IMAGE_FIELDS(X)                                                                 \
	X(name,          TEXT, 65,   REQ, 64,         "",              NULL,            0)        \
	X(base,          TEXT, 4096, REQ, 4000,       "",              "base",          REC_PATH) \
	X(kernel,        TEXT, 4096, OPT, 4000,       "",              "kernel",        REC_PATH) \
	X(initrd,        TEXT, 4096, OPT, 4000,       "",              "initrd",        REC_PATH) \
	X(append,        TEXT, 1024, OPT, 1000,       "",              "append",        0)        \
	X(machine,       TEXT, 65,   OPT, 64,         "pc-i440fx-7.2", "machine",       0)        \
	X(memory_mb,     UINT, 0,    REQ, 65536,      "",              "memory",        0)        \
	X(ready,         TEXT, 128,  OPT, 120,        "running",       "ready",         0)        \
	X(max_sessions,  UINT, 0,    SET, 100000,     "",              "max-sessions",  0)        \
	X(keepalive,     UINT, 0,    OPT, 7 * 86400,  "",              "keepalive",     0)        \
	X(idle,          UINT, 0,    OPT, 7 * 86400,  "",              "idle",          0)        \
	X(max_lifetime,  UINT, 0,    OPT, 30 * 86400, "",              "max-lifetime",  0)        \
	X(start_timeout, UINT, 0,    OPT, 3600,       "",              "start-timeout", 0)        \
	X(queue_wait,    UINT, 0,    OPT, 86400,      "",              "queue-wait",    0)        \
	X(sha256,        TEXT, 65,   NO,  0,          "",              NULL,            0)        \
	X(size,          U64,  0,    NO,  0,          "",              NULL,            0)        \
	X(mtime_ns,      I64,  0,    NO,  0,          "",              NULL,            0)        \
	X(virtual_mb,    UINT, 0,    NO,  0,          "",              NULL,            0)        \
	X(warm_pool,     UINT, 0,    SET, 1000,       "",              "warm-pool",     0)        \
	X(backend,       TEXT, 16,   OPT, 15,         "console",       "backend",       0)        \
	X(rdp_port,      UINT, 0,    OPT, 65535,      "",              "rdp-port",      0)        \
	X(created,       I64,  0,    NO,  0,          "",              NULL,            0)

/* An rdp image's policy: its members are keyed rdp_security, guest_login, guest_user... */
#define DB_RDP_FIELDS(X)                                                                   \
	X(security,      TEXT, 8,    SET, 7,          "rdp",           "rdp-security",  0)        \
	X(login,         TEXT, 8,    SET, 7,          "image",         "guest-login",   0)        \
	X(user,          TEXT, 65,   SET, 64,         "",              "guest-user",    0)        \
	X(domain,        TEXT, 65,   SET, 64,         "",              "guest-domain",  0)        \
	X(password,      TEXT, 129,  SET, 128,        "",              "guest-password-file", REC_SECRET | REC_FILE) \
	X(clipboard,     BOOL, 0,    SET, 1,          "",              "clipboard",     0)        \
	X(drive,         BOOL, 0,    SET, 1,          "",              "drive",         0)        \
	X(clip_formats,  TEXT, 8,    SET, 7,          "text",          "clipboard-formats", 0)    \
	X(clip_max,      UINT, 0,    SET, 8388600,    "",              "clipboard-max-bytes", 0)  \
	X(remoteapp,     BOOL, 0,    SET, 1,          "",              "remoteapp",     0)

#define DB_RDP_KEY_security "rdp_security"
#define DB_RDP_KEY_login "guest_login"
#define DB_RDP_KEY_user "guest_user"
#define DB_RDP_KEY_domain "guest_domain"
#define DB_RDP_KEY_password "guest_password"
#define DB_RDP_KEY_clipboard "clipboard"
#define DB_RDP_KEY_drive "drive"
#define DB_RDP_KEY_clip_formats "clipboard_formats"
#define DB_RDP_KEY_clip_max "clipboard_max_bytes"
#define DB_RDP_KEY_remoteapp "remoteapp"

#define DB_APP_FIELDS(X)                                                                   \
	X(alias,         TEXT, 65,   REQ, 64,         "",              NULL,            0)        \
	X(image,         TEXT, 65,   REQ, 64,         "",              "image",         0)        \
	X(title,         TEXT, 129,  REQ, 128,        "",              "title",         0)        \
	X(command,       TEXT, 1024, OPT, 1000,       "",              "command",       0)

#define DB_SESSION_FIELDS(X)                                                               \
	X(id,            TEXT, 33,   REC_V_HIST | REC_V_LIVE)  \
	X(user,          TEXT, 65,   REC_V_HIST | REC_V_LIVE)  \
	X(app,           TEXT, 65,   REC_V_HIST | REC_V_LIVE)  \
	X(image,         TEXT, 65,   REC_V_HIST | REC_V_LIVE)  \
	X(state,         TEXT, 16,   REC_V_HIST)               \
	X(pid,           INT,  0,    REC_V_SET)                \
	X(qmp,           TEXT, 256,  0)                        \
	X(vnc,           TEXT, 256,  REC_V_UP)                 \
	X(overlay,       TEXT, 4096, 0)                        \
	X(client,        TEXT, 64,   REC_V_HIST | REC_V_LIVE)  \
	X(end_reason,    TEXT, 256,  REC_V_HIST | REC_V_ENDED) \
	X(start_path,    TEXT, 16,   REC_V_HIST | REC_V_SET)   /* cold | template | warm */  \
	X(template_dir,  TEXT, 4096, 0)                        /* the template it was cloned from */ \
	X(rdp_port,      UINT, 0,    REC_V_UP_SET)             /* rdp: the guest's forward on 127.0.0.1 */ \
	X(memory_mb,     UINT, 0,    REC_V_HIST | REC_V_LIVE)  \
	X(created,       I64,  0,    REC_V_HIST | REC_V_LIVE)  /* wall clock, seconds; 0 unset */ \
	X(started,       I64,  0,    REC_V_HIST)               \
	X(ready,         I64,  0,    REC_V_HIST | REC_V_UP)    \
	X(ended,         I64,  0,    REC_V_HIST)               \
	X(accel,         TEXT, 8,    REC_V_HIST)               /* kvm | tcg: what the guest runs under */ \
	X(host,          TEXT, 65,   0)                        /* who claimed it (store_session_claim) */ \
	X(grant,         TEXT, 33,   REC_SECRET)               /* the gateway's key to this session */ \
	X(fleet_id,      TEXT, 17,   REC_V_HIST | REC_V_LIVE)  /* its id in the fleet ("": rec id) */ \
	X(end_at,        I64,  0,    0)                        /* an administrator's end: wall clock, s */ \
	X(end_message,   TEXT, 256,  0)                        /* ...and what the user is told */

/* A warm-pool guest: a paused template clone, reattached after a restart. */
#define DB_WARM_FIELDS(X)                                                                  \
	X(id,            TEXT, 17,   0)                        \
	X(image,         TEXT, 65,   0)                        \
	X(pid,           INT,  0,    0)                        \
	X(template_dir,  TEXT, 4096, 0)                        \
	X(memory_mb,     UINT, 0,    0)                        \
	X(accel,         TEXT, 8,    0)                        \
	X(ready,         BOOL, 0,    0)                        /* restored and paused: may be handed out */

#define DB_AUDIT_FIELDS(X)                                                                 \
	X(ts,            I64,  0,    0)                        \
	X(kind,          TEXT, 32,   0)                        \
	X(user,          TEXT, 65,   0)                        \
	X(client,        TEXT, 64,   0)                        \
	X(session,       TEXT, 33,   0)                        \
	X(detail,        TEXT, 1024, 0)

/* Host caps (0 = unlimited): X(key, max, cli) */
#define DB_CAP_FIELDS(X)                                                                   \
	X(max_sessions,      100000,   "max-sessions")      \
	X(max_starting,      10000,    "max-starting")      \
	X(max_memory_mb,     16u << 20, "max-memory-mb")    \
	X(user_max_sessions, 1000,     "user-max-sessions")
/* clang-format on */

#define REC_CTYPE_TEXT(m, n) char m[n];
#define REC_CTYPE_UINT(m, n) unsigned m;
#define REC_CTYPE_INT(m, n) int m;
#define REC_CTYPE_I64(m, n) int64_t m;
#define REC_CTYPE_U64(m, n) uint64_t m;
#define REC_CTYPE_BOOL(m, n) bool m;
#define REC_MEMBER(m, kind, size, ...) REC_CTYPE_##kind(m, size)

struct db_rdp_policy {
	DB_RDP_FIELDS(REC_MEMBER)
};

struct db_image {
	DB_IMAGE_FIELDS(REC_MEMBER)
	struct db_rdp_policy rdp;
};

struct db_app {
	DB_APP_FIELDS(REC_MEMBER)
};

struct db_session {
	DB_SESSION_FIELDS(REC_MEMBER)
};

struct db_warm {
	DB_WARM_FIELDS(REC_MEMBER)
};

struct db_audit {
	DB_AUDIT_FIELDS(REC_MEMBER)
};

#endif
