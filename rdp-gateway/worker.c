/*
 * One RDP connection, in a worker process of its own (gateway.c forks one
 * per connection; a crash here ends one user's connection only): its phase
 * machine. The connection moves through phases:
 *
 *   handshake -> login (own screen, if the client sent no or wrong
 *   credentials) -> wait (own screen: queue position, estimate, elapsed)
 *   -> guest (the session's backend, backend.h: the guest's screen over
 *   VNC, or the guest's own RDP server) ; any -> fail (message, then close)
 *
 * The worker's thread waits on one set of handles (the client, the
 * channels, the guest, a wake event for the RAIL and guest-connect
 * threads) with its next deadline as the timeout. nestord is called with
 * short blocking requests from this thread only; the handshake's deadline
 * is an alarm, the write stall's the kernel's (TCP_USER_TIMEOUT). What the
 * client sees is screen.c's; RemoteApp is rail.c's. The connection's
 * phase, handshake time and bytes go into the gateway's shared metrics
 * (gwmetrics.h) as the loop passes; they cost no wake-up of their own.
 */
#include "backend.h"
#include "log.h"
#include "worker.h"

#include <errno.h>
#include <freerdp/channels/wtsvc.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <winpr/synch.h>
#include <winpr/wtsapi.h>

#define FOLLOW_S 2	      /* long-poll: the wait screen's figures are this fresh */
#define RETRY_MS 1000	      /* nestord did not answer: ask again after this */
#define SIGNIN_MS 30000	      /* a sign-in (PAM, in nestord) is answered in this */
#define ACTIVITY_MS 30000     /* at most one activity report per this */
#define NESTORD_GONE_MS 60000 /* nestord restarting: keep waiting this long */
#define LEASE_EVERY_MS 1000   /* lease renewals (nestord's lease: 3 s) */
#define FAIL_SHOW_MS 4000     /* how long a final message stays up */
#define OWN_MAX_W 1920	      /* our own screens (login, wait) at most this big, whatever */
#define OWN_MAX_H 1200	      /* the client asks for before signing in */
#define BYTES_EVERY_MS 1000   /* the client's bytes are counted this often at most */

/* The backends, by the name nestord gives a session's (backend.h). */
static const struct gw_backend_ops *const backends[] = {&gw_backend_console, &gw_backend_rdp};

/* The phases as the metrics name them. */
static const enum gw_m_phase metric_phase[] = {[PH_HANDSHAKE] = GW_M_HANDSHAKE,
					       [PH_LOGIN] = GW_M_LOGIN,
					       [PH_WAIT] = GW_M_WAIT,
					       [PH_GUEST] = GW_M_GUEST,
					       [PH_FAIL] = GW_M_FAIL};

/* --- metrics --- */

/*
 * What the connection does, in its slot of the metrics' table: written when
 * it changed. Once activated it is signing in, even while the phase machine
 * is still in its handshake phase (nestord checking the client's own
 * credentials, a RemoteApp client's program awaited: login_timeout's time).
 */
static void publish(struct gw_peer *p)
{
	enum gw_m_phase ph = metric_phase[p->phase];
	if (p->phase == PH_HANDSHAKE && p->first_activation_done)
		ph = GW_M_LOGIN;
	unsigned now = (unsigned)ph << 8 | (unsigned)p->shown;
	if (now == p->published)
		return;
	p->published = now;
	gw_metrics_slot_set(p->gw->metrics, p->gw->slot, ph, p->shown);
}

/* The client's bytes since the last count, to the backend shown; at most once a second
 * (FORCE: now). */
static void count_bytes(struct gw_peer *p, bool force)
{
	int64_t now = now_ms();
	if (!p->gw->metrics || (!force && now < p->next_tcp_ms))
		return;
	p->next_tcp_ms = now + BYTES_EVERY_MS;
	gw_metrics_tcp_account(p->gw->metrics, &p->tcp, p->client->sockfd, p->shown);
}

/* --- phases --- */

static void set_leased(struct gw_peer *p, const char *id)
{
	snprintf(p->leased, sizeof(p->leased), "%s", id);
	p->next_lease_ms = now_ms() + LEASE_EVERY_MS;
}

/* What the lease's answer says of an announced end: the banner follows it. */
static void ending_news(struct gw_peer *p, const struct gw_ending *e)
{
	int64_t at = now_ms() + e->in_s * 1000;
	if (e->set && !strcmp(e->why, "idle") && p->lease_sent_ms <= p->last_activity_ms)
		return; /* asked before the input that ended it was reported: stale */
	if (e->set && (!p->ending.set || strcmp(e->why, p->ending.why)))
		log_info("peer %s: session=%s end announced (%s) in %lld s", p->addr, p->sess.id,
			 e->why, e->in_s);
	else if (!e->set && p->ending.set)
		log_info("peer %s: session=%s announced end cleared", p->addr, p->sess.id);
	/* in_s is rounded up: a second's difference is only the answer's age */
	if (!e->set || !p->ending.set || at > p->ending_at_ms + 1500 || at < p->ending_at_ms - 1500)
		p->ending_at_ms = at;
	p->ending = *e;
	p->banner_next_ms = 0; /* drawn (or taken away) at once */
}

/*
 * The banner of an announced end, in the guest phase: shown with the
 * seconds left, redrawn when they change (banner_next_ms, one of the
 * loop's deadlines), taken away when the end is no longer announced.
 */
static void banner_tick(struct gw_peer *p)
{
	int64_t now = now_ms();
	if (p->phase != PH_GUEST || !p->ending.set) {
		gw_screen_banner_off(p, p->phase == PH_GUEST);
		return;
	}
	if (p->banner.pixels && now < p->banner_next_ms)
		return;
	long long left = p->ending_at_ms > now ? (p->ending_at_ms - now + 999) / 1000 : 0;
	char countdown[64];
	gw_banner_countdown(countdown, sizeof(countdown), left);
	if (gw_screen_banner(p, countdown, p->ending.message) < 0)
		log_warn("peer %s: session=%s cannot draw the end's banner", p->addr, p->sess.id);
	/* the next second shown; at 0 it stays until nestord ends the session */
	p->banner_next_ms = left > 0 ? p->ending_at_ms - (left - 1) * 1000 : now + 1000;
}

/*
 * nestord turns the session disconnected if this worker stops renewing (it
 * died). The renewal never waits for nestord: it is sent, and its answer
 * read (or given up) at the next renewal, so a slow nestord cannot freeze
 * the user's screen.
 */
static void renew_lease(struct gw_peer *p)
{
	if (!p->leased[0] || now_ms() < p->next_lease_ms)
		return;
	if (p->lease_call.fd >= 0) {
		struct gw_ending e;
		int r = gw_bapi_lease_read(&p->lease_call, p->leased, &e);
		if (r == -EAGAIN)
			httpc_call_cancel(&p->lease_call); /* a second without an answer: give up */
		else if (r == 0)
			ending_news(p, &e);
	}
	const char *ids[1] = {p->leased};
	p->lease_sent_ms = now_ms();
	gw_bapi_lease_start(&p->lease_call, p->gw->cfg.api_socket, p->gw->id, ids, 1);
	p->next_lease_ms = now_ms() + LEASE_EVERY_MS;
}

void gw_peer_fail(struct gw_peer *p, const char *title, const char *msg)
{
	set_leased(p, "");
	log_info("peer %s: %s: %s", p->addr, title, msg);
	p->phase = PH_FAIL;
	p->fail_until_ms = now_ms() + FAIL_SHOW_MS;
	gw_screen_draw_message(p, title, msg);
	gw_screen_flush(p, true);
}

static void enter_login(struct gw_peer *p, const char *user, const char *msg)
{
	if (p->phase != PH_LOGIN) /* the deadline runs from the first login screen */
		p->login_until_ms = now_ms() + (int64_t)p->gw->cfg.login_timeout * 1000;
	p->phase = PH_LOGIN;
	gw_login_clear(&p->login);
	snprintf(p->login.user, sizeof(p->login.user), "%s", user ? user : "");
	p->login.focus = p->login.user[0] ? GW_FIELD_PASSWORD : GW_FIELD_USER;
	p->login.want_code = p->code_asked;
	snprintf(p->message, sizeof(p->message), "%s", msg ? msg : "");
	gw_screen_draw_login(p);
}

/* A sign-in's answer, as the metrics count it. */
static enum gw_m_signin signin_result(int r)
{
	switch (r) {
	case 0:
		return GW_M_SIGNED_IN;
	case 401:
		return GW_M_DENIED;
	case 403: /* not allowed */
	case 404: /* no such app */
	case 429: /* throttled */
		return GW_M_REFUSED;
	default: /* no answer, or nestord failed */
		return GW_M_FAILED;
	}
}

/* What nestord answered to the sign-in (R: 0 and S, or an error with MSG). */
static void signin_done(struct gw_peer *p, int r, const struct gw_session *s, const char *msg)
{
	const char *user = p->user;
	if (r == GW_BAPI_NEED_CODE) {
		/* a second factor: the form again, what the user gave kept, the code to type */
		log_info("peer %s: user=%s: nestord asks for a one-time code", p->addr, user);
		p->code_asked = true;
		enter_login(p, user, msg);
		snprintf(p->login.pass, sizeof(p->login.pass), "%s", p->secret);
		explicit_bzero(p->secret, sizeof(p->secret));
		gw_login_ask_code(&p->login);
		gw_screen_draw_login(p);
		return;
	}
	gw_metrics_signin(p->gw->metrics, signin_result(r));
	if (r == 0) {
		p->sess = *s;
		snprintf(p->grant, sizeof(p->grant), "%s", s->grant);
		snprintf(p->title, sizeof(p->title), "%s", s->title);
		p->phase = PH_WAIT;
		p->wait_started_ms = now_ms();
		p->next_poll_ms = 0;
		/* this process serves this session now: the journal says so on every line */
		log_context(s->id, user, NULL);
		log_info("peer %s: user=%s session=%s app=%s %s", p->addr, user, s->id, p->app,
			 s->state);
		if (p->rail_mode && p->window_created)
			gw_rail_window(p, false); /* the title is known now */
		gw_screen_draw_wait(p);
		return;
	}
	explicit_bzero(p->secret, sizeof(p->secret));
	if (r == 401) {
		p->attempts++;
		if (p->attempts >= p->gw->cfg.login_attempts) {
			gw_peer_fail(p, "Sign-in failed", "Too many failed attempts. Goodbye.");
			return;
		}
		char m[160];
		snprintf(m, sizeof(m), "Wrong user name or password (%u of %u)", p->attempts,
			 p->gw->cfg.login_attempts);
		enter_login(p, user, m);
		return;
	}
	if (r == 403 || r == 429) {
		gw_peer_fail(p, r == 403 ? "Access refused" : "Not now", msg);
		return;
	}
	if (r == 404) {
		gw_peer_fail(p, "Unknown app", msg);
		return;
	}
	gw_peer_fail(p, "Cannot start", msg);
}

/*
 * Authenticate and connect through nestord; wipes PASSWORD and CODE (""
 * none). The answer comes to signin_read.
 */
static void try_connect(struct gw_peer *p, const char *user, char *password, char *code)
{
	snprintf(p->user, sizeof(p->user), "%s", user);
	if (p->phase == PH_LOGIN) /* the user's part is done: the first frame's wait begins */
		p->asked_ms = now_ms();
	/* an rdp image may sign in to its guest as the user: kept until then */
	snprintf(p->secret, sizeof(p->secret), "%s", password);
	int r = gw_bapi_connect_start(&p->signin, p->gw->cfg.api_socket, user, password, code,
				      p->app, p->addr);
	explicit_bzero(password, strlen(password));
	explicit_bzero(code, strlen(code));
	if (r == 0) {
		p->signin_ev =
		    CreateFileDescriptorEventA(NULL, FALSE, FALSE, p->signin.fd, WINPR_FD_READ);
		if (!p->signin_ev) {
			httpc_call_cancel(&p->signin);
			r = -ENOMEM;
		}
	}
	if (r < 0) {
		signin_done(p, r, NULL, "the session service is not available");
		return;
	}
	p->signin_until_ms = now_ms() + SIGNIN_MS;
	if (p->phase == PH_LOGIN) {
		snprintf(p->message, sizeof(p->message), "Signing in...");
		p->login_dirty = true;
	}
}

static void signin_end(struct gw_peer *p)
{
	if (p->signin_ev)
		CloseHandle(p->signin_ev);
	p->signin_ev = NULL;
	httpc_call_cancel(&p->signin);
}

/* The sign-in's answer, as far as it has come. */
static void signin_read(struct gw_peer *p)
{
	struct gw_session s;
	char msg[256] = "";
	int r = gw_bapi_connect_read(&p->signin, &s, msg, sizeof(msg));
	if (r == -EAGAIN && now_ms() < p->signin_until_ms)
		return;
	if (r == -EAGAIN) {
		r = -ETIMEDOUT;
		snprintf(msg, sizeof(msg), "the session service did not answer");
	}
	signin_end(p);
	signin_done(p, r, &s, msg);
	explicit_bzero(s.grant, sizeof(s.grant));
}

/* An order from the guest the guard dropped: logged (the first few), never relayed. */
void gw_peer_refused(struct gw_peer *p, const char *what, const char *why)
{
	if (p->guest_refusals++ < 8)
		log_warn("peer %s: session=%s the guest sent %s: %s: dropped", p->addr, p->sess.id,
			 what, why);
}

/* Why the guest went away, as nestord tells it (it may take a moment to notice). */
void gw_peer_ended_message(struct gw_peer *p, char *out, size_t len)
{
	struct gw_session s;
	snprintf(out, len, "The application was closed.");
	if (gw_bapi_wait(p->gw->cfg.api_socket, p->sess.id, p->grant, "connected", 2, &s) < 0)
		return;
	if (!strncmp(s.reason, "lost", 4))
		snprintf(out, len,
			 "Its computer stopped unexpectedly and your work there is lost. "
			 "Connect again to start a new one.");
	else if (s.reason[0] && (!strcmp(s.state, "ended") || !strcmp(s.state, "ending")))
		snprintf(out, len, "%s.", s.reason);
}

static void guest_shown(struct gw_peer *p)
{
	count_bytes(p, true); /* what came before the guest is the gateway's own */
	p->shown = gw_metrics_backend(p->backend->name);
	if (gw_bapi_attach(p->gw->cfg.api_socket, p->sess.id, p->grant, p->gw->id) < 0)
		log_warn("peer %s: session=%s attach failed", p->addr, p->sess.id);
	set_leased(p, p->sess.id);
	p->phase = PH_GUEST;
	p->last_activity_ms = now_ms();
	/* the guest's first full update replaces the wait screen: no black frame between */
	p->backend->refresh(p);
	log_info("peer %s: session=%s showing the guest", p->addr, p->sess.id);
}

static const struct gw_backend_ops *backend_named(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(backends); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return &gw_backend_console; /* what every image had before there was a choice */
}

static void enter_guest(struct gw_peer *p)
{
	p->backend = backend_named(p->sess.backend);
	/* -EINPROGRESS: the wait screen stays until it is done; else the fail screen is up */
	if (p->backend->open(p) == 0)
		guest_shown(p);
}

static bool guest_state(const char *state)
{
	return !strcmp(state, "ready") || !strcmp(state, "connected") ||
	       !strcmp(state, "disconnected");
}

static void follow_end(struct gw_peer *p)
{
	if (p->follow_ev)
		CloseHandle(p->follow_ev);
	p->follow_ev = NULL;
	httpc_call_cancel(&p->follow);
}

/*
 * Follow the session with nestord's long-poll: it answers once the state
 * changes, or after FOLLOW_S (the queue position and estimate move without
 * a state change). The worker waits on its socket with everything else.
 */
static bool follow_start(struct gw_peer *p)
{
	if (gw_bapi_wait_start(&p->follow, p->gw->cfg.api_socket, p->sess.id, p->grant,
			       p->sess.state, FOLLOW_S) < 0)
		return false;
	p->follow_until_ms = now_ms() + (FOLLOW_S + 5) * 1000;
	p->follow_ev = CreateFileDescriptorEventA(NULL, FALSE, FALSE, p->follow.fd, WINPR_FD_READ);
	if (!p->follow_ev) {
		httpc_call_cancel(&p->follow);
		return false;
	}
	return true;
}

/* What nestord said about the session (R: 0 and S, or an error). */
static void session_news(struct gw_peer *p, int r, const struct gw_session *s)
{
	int64_t now = now_ms();
	if (r < 0 && r != -EPROTO) {
		/* nestord is not answering (restarting?): the session is in its
		 * database, so keep the user waiting for a while */
		p->next_poll_ms = now + RETRY_MS;
		if (!p->nestord_gone_ms) {
			p->nestord_gone_ms = now;
			log_warn("peer %s: session=%s nestord is not answering: waiting", p->addr,
				 p->sess.id);
			snprintf(p->sess.reason, sizeof(p->sess.reason),
				 "the session service is restarting");
		} else if (now - p->nestord_gone_ms > NESTORD_GONE_MS) {
			gw_peer_fail(p, "Cannot start", "The session service went away.");
		}
		return;
	}
	if (r != 0) {
		gw_peer_fail(p, "Cannot start", "Your session is gone.");
		return;
	}
	if (p->nestord_gone_ms)
		log_info("peer %s: session=%s nestord answers again", p->addr, p->sess.id);
	p->nestord_gone_ms = 0;
	char notice[sizeof(p->sess.notice)]; /* only connect's answer has it: keep it */
	snprintf(notice, sizeof(notice), "%s", s->notice[0] ? s->notice : p->sess.notice);
	p->sess = *s;
	snprintf(p->sess.notice, sizeof(p->sess.notice), "%s", notice);
	p->next_poll_ms = 0; /* follow on at once */
	if (!strcmp(s->state, "ended") || !strcmp(s->state, "ending"))
		gw_peer_fail(p, "Your session could not start",
			     s->reason[0] ? s->reason : "It ended.");
}

static void poll_session(struct gw_peer *p)
{
	int64_t now = now_ms();
	if (p->backend) { /* being opened */
		int r = p->backend->opened(p);
		if (r == 0)
			guest_shown(p);
		else if (r == -EINPROGRESS && now - p->last_draw_ms >= 1000)
			gw_screen_draw_wait(p);
		return;
	}
	if (p->follow_ev) {
		struct gw_session s;
		int r = gw_bapi_wait_read(&p->follow, &s);
		if (r == -EAGAIN && now < p->follow_until_ms)
			goto draw;
		if (r == -EAGAIN)
			r = -ETIMEDOUT; /* nestord took the call but does not answer */
		follow_end(p);
		session_news(p, r, &s);
		if (p->phase != PH_WAIT)
			return;
	}
	if (!p->follow_ev && now >= p->next_poll_ms) {
		if (guest_state(p->sess.state)) {
			/* switch once the wait screen was seen, however fast the guest was (a
			 * client that suppressed output sees nothing either way) */
			if (p->wait_shown || p->suppress) {
				enter_guest(p);
				return;
			}
			int64_t frame = p->last_frame_ms > now ? p->last_frame_ms : now;
			p->next_poll_ms = frame + 1000 / (int64_t)p->gw->cfg.frame_rate;
		} else if (!follow_start(p)) {
			session_news(p, -ECONNREFUSED, NULL);
			if (p->phase != PH_WAIT)
				return;
		}
	}
draw:
	if (now - p->last_draw_ms >= 1000) /* at least once a second */
		gw_screen_draw_wait(p);
}

static void report_activity(struct gw_peer *p)
{
	int64_t now = now_ms();
	/* input ends an idle warning: nestord is told at once, the banner goes now */
	bool idle = p->ending.set && !strcmp(p->ending.why, "idle");
	if (idle) {
		p->ending.set = false;
		p->banner_next_ms = 0;
	}
	if (p->phase == PH_GUEST && (idle || now - p->last_activity_ms >= ACTIVITY_MS)) {
		p->last_activity_ms = now;
		gw_bapi_post(p->gw->cfg.api_socket, p->sess.id, p->grant, "activity");
	}
}

/* --- FreeRDP callbacks (this thread) --- */

/* The login form changed or was submitted (the password and code are wiped by try_connect). */
static void login_event(struct gw_peer *p, enum gw_login_ev ev)
{
	if (ev == GW_LOGIN_CHANGED) {
		p->login_dirty = true; /* drawn with the next frame, however fast the keys come */
	} else if (ev == GW_LOGIN_SUBMIT && !p->signin_ev) { /* one sign-in at a time */
		char user[65], pass[257], code[65];
		snprintf(user, sizeof(user), "%s", p->login.user);
		snprintf(pass, sizeof(pass), "%s", p->login.pass);
		snprintf(code, sizeof(code), "%s", p->login.code);
		gw_login_clear(&p->login);
		try_connect(p, user, pass, code);
	}
}

static BOOL on_keyboard(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase == PH_LOGIN) {
		login_event(p, gw_login_key(&p->login, flags, code));
	} else if (p->phase == PH_GUEST) {
		p->backend->key(p, flags, code);
		report_activity(p);
	}
	return TRUE;
}

static BOOL on_unicode(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase == PH_LOGIN) {
		login_event(p, gw_login_unicode(&p->login, flags, code));
	} else if (p->phase == PH_GUEST) {
		p->backend->unicode(p, flags, code);
		report_activity(p);
	}
	return TRUE;
}

static BOOL on_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase != PH_GUEST)
		return TRUE;
	p->backend->mouse(p, flags, x, y);
	report_activity(p);
	return TRUE;
}

static BOOL on_extended_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase == PH_GUEST && p->backend->xmouse) {
		p->backend->xmouse(p, flags, x, y);
		return TRUE;
	}
	return on_mouse(input, 0x0800, x, y); /* extra buttons: treat as a move */
}

static BOOL on_synchronize(rdpInput *input, UINT32 flags)
{
	return TRUE;
}

static BOOL on_refresh_rect(rdpContext *ctx, BYTE count, const RECTANGLE_16 *areas)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	for (BYTE i = 0; i < count; i++)
		gw_screen_damage(p, areas[i].left, areas[i].top, areas[i].right - areas[i].left + 1,
				 areas[i].bottom - areas[i].top + 1);
	if (!count)
		gw_screen_damage_all(p);
	return TRUE;
}

static BOOL on_suppress_output(rdpContext *ctx, BYTE allow, const RECTANGLE_16 *area)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	p->suppress = !allow;
	if (allow)
		gw_screen_damage_all(p);
	return TRUE;
}

static BOOL on_capabilities(freerdp_peer *client)
{
	rdpSettings *s = client->settings;
	if (s->RemoteApplicationMode) {
		/* without these the client drops RAIL (2.11: level 3 is refused) */
		s->RemoteApplicationSupportLevel = 0x5F; /* RAIL_LEVEL_SUPPORTED and friends */
		s->RemoteWndSupportLevel = 2;
	}
	return TRUE;
}

static BOOL on_post_connect(freerdp_peer *client)
{
	return TRUE;
}

static BOOL on_activate(freerdp_peer *client)
{
	struct gw_peer *p = (struct gw_peer *)client->context;
	rdpSettings *s = client->settings;
	p->activated = true;
	alarm(0); /* the handshake is done */
	p->need_resize = false;
	if (p->first_activation_done) {
		/* reactivation after a desktop resize: resend everything */
		if (p->backend)
			p->backend->refresh(p);
		gw_screen_damage_all(p);
		return TRUE;
	}
	p->first_activation_done = true;
	gw_metrics_handshake(p->gw->metrics, (double)(now_ms() - p->gw->accepted_ms) / 1e3);
	p->rail_mode = s->RemoteApplicationMode;
	/* a RemoteApp client names its app after activation: that wait is bounded too */
	p->login_until_ms = now_ms() + (int64_t)p->gw->cfg.login_timeout * 1000;
	if (s->ColorDepth < 32)
		s->ColorDepth = 32; /* planar at 32 bpp is what every client we support takes */
	gw_screen_rfx_start(p);
	unsigned w = s->DesktopWidth ? s->DesktopWidth : p->gw->cfg.width;
	unsigned h = s->DesktopHeight ? s->DesktopHeight : p->gw->cfg.height;
	/* nobody has signed in yet: what we draw is bounded, whatever the client asked
	 * (the rest of a larger desktop stays black) */
	w = w > OWN_MAX_W ? OWN_MAX_W : w;
	h = h > OWN_MAX_H ? OWN_MAX_H : h;
	if (p->rail_mode) {
		w = 720; /* the window the wait screen lives in until the guest's size is known */
		h = 400;
	}
	if (gw_screen_resize(p, w, h) < 0)
		return FALSE;
	/* the TCP peer is who connected; what the client says of itself is only logged */
	if (s->ClientAddress && *s->ClientAddress)
		log_info("peer %s: the client calls itself %.64s", p->addr, s->ClientAddress);
	log_info("peer %s: activated %ux%u%s, %s security, %s", p->addr, w, h,
		 p->rail_mode ? " RemoteApp" : "", s->UseRdpSecurityLayer ? "RDP" : "TLS",
		 p->rfx ? "RemoteFX" : "planar");

	if (p->rail_mode) {
		if (gw_rail_start(p) < 0) {
			log_warn("peer %s: RemoteApp asked for but the rail channel is not joined",
				 p->addr);
			return FALSE;
		}
		return TRUE; /* the app alias arrives with the client's exec */
	}
	snprintf(p->app, sizeof(p->app), "%s", p->gw->cfg.default_app);
	if (s->AlternateShell && *s->AlternateShell && util_name_valid(s->AlternateShell))
		snprintf(p->app, sizeof(p->app), "%s", s->AlternateShell);
	return TRUE;
}

/* After activation (and, for RemoteApp, the exec): credentials or the login screen. */
static void begin(struct gw_peer *p)
{
	rdpSettings *s = p->ctx.settings;
	if (!p->app[0]) {
		gw_peer_fail(p, "No app", "This gateway has no default app: ask for one by name.");
		return;
	}
	const char *user = s->Username ? s->Username : "";
	if (*user && s->Password && *s->Password && util_name_valid(user)) {
		char pass[257], code[1] = "";
		snprintf(pass, sizeof(pass), "%s", s->Password);
		explicit_bzero(s->Password, strlen(s->Password));
		try_connect(p, user, pass, code); /* a one-time code PAM wants is asked for */
		return;
	}
	if (s->Password)
		explicit_bzero(s->Password, strlen(s->Password));
	enter_login(p, util_name_valid(user) ? user : "", NULL);
}

static BOOL context_new(freerdp_peer *client, rdpContext *ctx)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	p->gw = client->ContextExtra;
	p->client = client;
	p->asked_ms = p->gw->accepted_ms;
	/* no call in flight (FreeRDP zeroed the context: fd 0 is a real fd) */
	p->follow.fd = p->signin.fd = p->lease_call.fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	p->vcm = WTSOpenServerA((LPSTR)client->context);
	if (!p->vcm || p->vcm == INVALID_HANDLE_VALUE)
		return FALSE;
	p->wake = CreateEvent(NULL, TRUE, FALSE, NULL);
	if (!p->wake)
		return FALSE;
	return gw_screen_init(p) == 0;
}

static void context_free(freerdp_peer *client, rdpContext *ctx)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	gw_rail_stop(p);
	if (p->vcm && p->vcm != INVALID_HANDLE_VALUE)
		WTSCloseServer(p->vcm);
	if (p->wake)
		CloseHandle(p->wake);
	gw_screen_finish(p);
	gw_login_clear(&p->login);
	explicit_bzero(p->secret, sizeof(p->secret));
	explicit_bzero(p->grant, sizeof(p->grant));
	pthread_mutex_destroy(&p->lock);
}

/* --- the connection's thread --- */

/*
 * The handshake's deadline: FreeRDP 2 blocks in parts of it, so the alarm
 * cuts the socket under it (shutdown is async-signal-safe); the blocked read
 * then ends and the connection with it.
 */
static volatile sig_atomic_t handshake_cut;
static int client_fd = -1;

static void on_alarm(int sig)
{
	(void)sig;
	int e = errno;
	handshake_cut = 1;
	if (client_fd >= 0)
		shutdown(client_fd, SHUT_RDWR);
	errno = e;
}

/*
 * The socket's own limits: a client that stops reading (the window stays
 * shut) or vanishes (no ACKs, no keepalive answers) is cut after
 * STALL_S seconds instead of holding its worker forever.
 */
void gw_socket_limits(int fd, unsigned stall_s)
{
	int one = 1, idle = 60, intvl = 10, cnt = 3;
	unsigned ms = stall_s * 1000;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	if (ms)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

/*
 * How long the connection's thread may sleep: until its next deadline (a
 * paced frame, a redraw, a poll, the login or fail deadline), 0 when FreeRDP
 * still holds input it has read. Everything else wakes it: the client's and
 * the guest's sockets, the channels, and the wake event other threads set.
 * At most a second, as a safety net only.
 */
static DWORD next_timeout(struct gw_peer *p, bool more)
{
	if (more || p->need_resize)
		return 0;
	int64_t now = now_ms(), due = now + 1000;
	int64_t frame = p->last_frame_ms + 1000 / (int64_t)p->gw->cfg.frame_rate;
#define DUE(t)                                                                                     \
	do {                                                                                       \
		if ((t) < due)                                                                     \
			due = (t);                                                                 \
	} while (0)
	if (!p->activated) { /* (re)activating: nothing to draw, only the lease to keep */
		if (p->leased[0])
			DUE(p->next_lease_ms);
		return due <= now ? 0 : (DWORD)(due - now);
	}
	/* frames once begun (a RemoteApp client's screen waits for its program) */
	if (p->phase != PH_HANDSHAKE && !p->suppress && gw_screen_has_dirty(p))
		DUE(frame);
	switch (p->phase) {
	case PH_LOGIN:
		if (!p->signin_ev)
			DUE(p->login_until_ms + 1);
		if (p->login_dirty)
			DUE(frame);
		break;
	case PH_WAIT:
		DUE(p->last_draw_ms + 1000);
		if (p->backend) /* being opened */
			DUE(p->backend->deadline(p));
		else if (!p->follow_ev)
			DUE(p->next_poll_ms);
		else
			DUE(p->follow_until_ms);
		break;
	case PH_FAIL:
		DUE(p->fail_until_ms + 1);
		break;
	case PH_GUEST:
		if (p->ending.set || p->banner.pixels) /* the banner's next second */
			DUE(p->banner_next_ms);
		break;
	default:
		break;
	}
	if (p->leased[0])
		DUE(p->next_lease_ms);
	if (p->signin_ev)
		DUE(p->signin_until_ms);
#undef DUE
	return due <= now ? 0 : (DWORD)(due - now);
}

int gw_peer_run(struct gw *gw, freerdp_peer *client)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "%s", client->hostname);
	client_fd = client->sockfd;
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	sigaction(SIGALRM, &sa, NULL);
	alarm(gw->cfg.handshake_timeout); /* cleared by the first activation */
	gw_socket_limits(client->sockfd, gw->cfg.stall_timeout);
	client->ContextExtra = gw;
	client->ContextSize = sizeof(struct gw_peer);
	client->ContextNew = context_new;
	client->ContextFree = context_free;
	if (!freerdp_peer_context_new(client)) {
		log_err("peer %s: cannot create its context", addr);
		freerdp_peer_free(client);
		return 1;
	}
	struct gw_peer *p = (struct gw_peer *)client->context;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);

	rdpSettings *s = client->settings;
	/* the contents the listener read: this process cannot open the key */
	s->CertificateContent = strdup(gw->cert_pem);
	s->PrivateKeyContent = strdup(gw->key_pem);
	s->RdpKeyContent = strdup(gw->key_pem);
	s->TlsSecurity = TRUE;
	s->AllowedTlsCiphers = strdup(gw->cfg.tls_ciphers);
	s->NlaSecurity = FALSE; /* NLA needs the NT hash of the password: PAM cannot give it */
	s->RdpSecurity = gw->cfg.rdp_security;
	s->EncryptionLevel = ENCRYPTION_LEVEL_CLIENT_COMPATIBLE;
	s->ColorDepth = 32;
	s->SuppressOutput = TRUE;
	s->RefreshRect = TRUE;
	s->DesktopResize = TRUE;
	s->RemoteFxCodec = gw->cfg.remotefx; /* used if the client offers it too */
	s->NSCodec = FALSE;
	s->MultifragMaxRequestSize = 0x3f0000;
	client->Capabilities = on_capabilities;
	client->PostConnect = on_post_connect;
	client->Activate = on_activate;
	client->input->KeyboardEvent = on_keyboard;
	client->input->UnicodeKeyboardEvent = on_unicode;
	client->input->MouseEvent = on_mouse;
	client->input->ExtendedMouseEvent = on_extended_mouse;
	client->input->SynchronizeEvent = on_synchronize;
	client->update->RefreshRect = on_refresh_rect;
	client->update->SuppressOutput = on_suppress_output;
	if (!client->Initialize(client)) {
		log_warn("peer %s: initialisation failed", addr);
		goto out;
	}
	log_debug("peer %s: connected", addr);

	bool begun = false, more = false;
	while (!handshake_cut) {
		publish(p);
		count_bytes(p, false); /* the loop wakes at least once a second anyway */
		HANDLE h[MAXIMUM_WAIT_OBJECTS];
		DWORD n = client->GetEventHandles(client, h, 32);
		if (!n)
			break;
		h[n++] = WTSVirtualChannelManagerGetEventHandle(p->vcm);
		h[n++] = p->wake;
		if (p->follow_ev && p->phase != PH_WAIT)
			follow_end(p);
		if (p->follow_ev)
			h[n++] = p->follow_ev;
		if (p->signin_ev)
			h[n++] = p->signin_ev;
		if (p->backend)
			n += p->backend->handles(p, h + n, MAXIMUM_WAIT_OBJECTS - n);
		if (WaitForMultipleObjects(n, h, FALSE, next_timeout(p, more)) == WAIT_FAILED)
			break;
		ResetEvent(p->wake);
		if (!client->CheckFileDescriptor(client))
			break;
		/* a PDU may already be read and decrypted: no event will say so */
		more = client->HasMoreToRead && client->HasMoreToRead(client);
		if (!WTSVirtualChannelManagerCheckFileDescriptor(p->vcm))
			break;
		if (p->signin_ev && p->phase == PH_FAIL)
			signin_end(p); /* cut meanwhile: nobody to tell */
		if (p->signin_ev)
			signin_read(p);
		if (!p->activated) {
			renew_lease(p); /* a reactivation may take a while */
			continue;
		}
		if (!begun) {
			if (p->rail_mode) {
				pthread_mutex_lock(&p->lock);
				bool seen = p->rail_exec_seen;
				if (seen)
					snprintf(p->app, sizeof(p->app), "%s", p->rail_alias);
				pthread_mutex_unlock(&p->lock);
				if (!seen && now_ms() > p->login_until_ms) {
					log_warn(
					    "peer %s: RemoteApp client sent no program in %u s, "
					    "cutting it",
					    p->addr, p->gw->cfg.login_timeout);
					break;
				}
				if (!seen)
					continue;
				if (!util_name_valid(p->app)) {
					gw_rail_window(p, true);
					gw_peer_fail(p, "Unknown app",
						     "That app name is not valid.");
					begun = true;
					continue;
				}
				gw_rail_window(p, true);
			}
			begun = true;
			begin(p);
		}
		if (p->need_resize) {
			p->need_resize = false;
			pthread_mutex_lock(&p->lock);
			client->update->DesktopResize(client->context);
			pthread_mutex_unlock(&p->lock);
			p->activated = false; /* the client reactivates */
			continue;
		}
		switch (p->phase) {
		case PH_LOGIN:
			/* the deadline is for the form: a sign-in under way has its own */
			if (!p->signin_ev && now_ms() > p->login_until_ms) {
				gw_peer_fail(p, "Sign-in timed out", "Connect again to sign in.");
				break;
			}
			if (p->login_dirty &&
			    now_ms() - p->last_frame_ms >= 1000 / (int64_t)p->gw->cfg.frame_rate) {
				p->login_dirty = false;
				gw_screen_draw_login(p);
			}
			break;
		case PH_WAIT:
			poll_session(p);
			break;
		case PH_GUEST:
			p->backend->pump(p); /* gone: the backend put up the fail screen */
			banner_tick(p);
			break;
		case PH_FAIL:
			if (now_ms() > p->fail_until_ms)
				goto out;
			break;
		default:
			break;
		}
		if (gw_screen_flush(p, false) < 0)
			break;
		renew_lease(p);
	}
out:
	log_info("peer %s: disconnected", p->addr);
	set_leased(p, ""); /* no renewal may bring it back after the detach */
	if (p->phase == PH_GUEST && p->sess.id[0])
		gw_bapi_post(gw->cfg.api_socket, p->sess.id, p->grant, "detach");
	follow_end(p);
	signin_end(p);
	httpc_call_cancel(&p->lease_call);
	if (p->backend)
		p->backend->close(p);
	count_bytes(p, true);
	client->Disconnect(client);
	freerdp_peer_context_free(client);
	freerdp_peer_free(client);
	if (handshake_cut)
		log_warn("peer %s: handshake not done after %u s, cut", addr,
			 gw->cfg.handshake_timeout);
	return 0;
}
