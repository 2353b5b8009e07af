-- nestor's fleet schema (PostgreSQL 15). Applied by `nestorctl fleet init`:
-- each "-- migration N" section runs once, in order, in its own
-- transaction, and is recorded in nestor_schema. Never edit a released
-- section: add the next one.

-- migration 1: hosts, the session directory, the fleet queue, tickets
CREATE TABLE nestor_schema (
	version integer PRIMARY KEY,
	applied timestamptz NOT NULL DEFAULT now()
);

-- One row per session host, written by its nestord every heartbeat.
CREATE TABLE hosts (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
	gateway text NOT NULL DEFAULT '',     -- HOST:PORT of its nestor-gateway
	fingerprint text NOT NULL DEFAULT '', -- sha256 of that gateway's certificate
	accel text NOT NULL DEFAULT '',       -- kvm | tcg | '' (not decided)
	max_sessions integer NOT NULL DEFAULT 0,
	max_starting integer NOT NULL DEFAULT 0,
	max_memory_mb integer NOT NULL DEFAULT 0,
	-- counted here by placements and ends, recounted from sessions each heartbeat
	sessions integer NOT NULL DEFAULT 0,
	starting integer NOT NULL DEFAULT 0,
	memory_mb integer NOT NULL DEFAULT 0,
	queued integer NOT NULL DEFAULT 0,    -- its own local queue
	images text[] NOT NULL DEFAULT '{}',    -- the images it has (it can start)
	warm text[] NOT NULL DEFAULT '{}',      -- images with a ready warm guest
	templates text[] NOT NULL DEFAULT '{}', -- images with a usable template
	start_ms integer NOT NULL DEFAULT 0,    -- its recent mean start time
	drained boolean NOT NULL DEFAULT false,
	up boolean NOT NULL DEFAULT true,
	heartbeat timestamptz NOT NULL DEFAULT now(),
	since timestamptz NOT NULL DEFAULT now() -- this nestord's start
);

-- Every session of the fleet; HOST is NULL while it waits in the fleet queue.
CREATE TABLE sessions (
	id text PRIMARY KEY,
	user_name text NOT NULL,
	app text NOT NULL,
	image text NOT NULL,
	memory_mb integer NOT NULL DEFAULT 0,
	host text REFERENCES hosts(name) ON UPDATE CASCADE,
	entry text NOT NULL DEFAULT '',  -- the host whose gateway the user reached
	state text NOT NULL,             -- queued | placed | starting | ready |
	                                 -- connected | disconnected | ending | ended | lost
	reason text NOT NULL DEFAULT '',
	round integer NOT NULL DEFAULT 1, -- the fleet queue: a user's k-th waiting request
	created timestamptz NOT NULL DEFAULT now(),
	placed timestamptz,
	ended timestamptz
);
CREATE INDEX sessions_live_host ON sessions (host) WHERE state NOT IN ('ended', 'lost');
CREATE INDEX sessions_live_user ON sessions (user_name) WHERE state NOT IN ('ended', 'lost');
CREATE INDEX sessions_live_image ON sessions (image) WHERE state NOT IN ('ended', 'lost');
-- the fleet queue: sessions no host has taken yet (a host's own queue has HOST set),
-- in rounds as on one host: everyone's first waiting request before anyone's second
CREATE INDEX sessions_queue ON sessions (round, created, id)
	WHERE state = 'queued' AND host IS NULL;

-- One-time tickets: an entry gateway presents one to the session's host
-- gateway instead of the user's password. Only the hash is stored.
CREATE TABLE tickets (
	hash bytea PRIMARY KEY,
	session text NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	host text NOT NULL,
	expires timestamptz NOT NULL
);

CREATE FUNCTION nestor_live(state text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT state NOT IN ('ended', 'lost') $$;

-- A host's heartbeat: its caps and usage, its view of its own queue; marks
-- hosts silent for longer than DOWN_S down and their sessions lost, and
-- ends fleet-queued requests older than QUEUE_WAIT_S (0: never).
-- Returns this host's drained flag (an admin may have set it anywhere) and
-- whether the fleet had taken it for down (its sessions for lost: the host
-- then tells it every session it still has).
CREATE FUNCTION nestor_heartbeat(p_name text, p_gateway text, p_fingerprint text, p_accel text,
	p_max_sessions integer, p_max_starting integer, p_max_memory_mb integer,
	p_queued integer, p_warm text[], p_templates text[], p_start_ms integer,
	p_since timestamptz, p_down_s integer, p_images text[], p_queue_wait_s integer,
	OUT is_drained boolean, OUT revived boolean)
LANGUAGE plpgsql AS $$
DECLARE
	v_was_up boolean;
BEGIN
	-- wait for placements on this host to commit: the recount's snapshot
	-- (taken by the next statement) then sees them (fleet-scale.md)
	SELECT h.up INTO v_was_up FROM hosts h WHERE h.name = p_name FOR UPDATE;
	revived := NOT coalesce(v_was_up, true);
	INSERT INTO hosts AS h (name, gateway, fingerprint, accel, max_sessions, max_starting,
		max_memory_mb, queued, images, warm, templates, start_ms, since)
	VALUES (p_name, p_gateway, p_fingerprint, p_accel, p_max_sessions, p_max_starting,
		p_max_memory_mb, p_queued, p_images, p_warm, p_templates, p_start_ms, p_since)
	ON CONFLICT (name) DO UPDATE SET gateway = EXCLUDED.gateway,
		fingerprint = EXCLUDED.fingerprint, accel = EXCLUDED.accel,
		max_sessions = EXCLUDED.max_sessions, max_starting = EXCLUDED.max_starting,
		max_memory_mb = EXCLUDED.max_memory_mb, queued = EXCLUDED.queued,
		images = EXCLUDED.images, warm = EXCLUDED.warm, templates = EXCLUDED.templates,
		start_ms = EXCLUDED.start_ms, since = EXCLUDED.since, up = true,
		heartbeat = now(),
		(sessions, starting, memory_mb) = (
			SELECT count(*), count(*) FILTER (WHERE s.state IN ('placed', 'starting')),
				coalesce(sum(s.memory_mb), 0)
			FROM sessions s WHERE s.host = p_name AND nestor_live(s.state))
	RETURNING drained INTO is_drained;

	WITH down AS (
		UPDATE hosts SET up = false
		WHERE up AND heartbeat < now() - make_interval(secs => p_down_s)
		RETURNING name)
	UPDATE sessions s SET state = 'lost', ended = now(),
		reason = 'its host ' || s.host || ' stopped answering'
	FROM down WHERE s.host = down.name AND nestor_live(s.state);

	-- nobody waits forever: an abandoned request must not start a guest later
	IF p_queue_wait_s > 0 THEN
		UPDATE sessions s SET state = 'ended', ended = now(),
			reason = 'waited in the fleet queue too long'
		WHERE s.state = 'queued' AND s.host IS NULL
			AND s.created < now() - make_interval(secs => p_queue_wait_s);
	END IF;
END $$;

-- Where queued session ID stands in the fleet queue (1: next), 0 if it is not in it.
CREATE FUNCTION nestor_queue_pos(p_id text) RETURNS integer LANGUAGE sql STABLE AS $$
	SELECT coalesce((SELECT count(*)::integer FROM sessions q, sessions me
		WHERE me.id = p_id AND me.state = 'queued' AND me.host IS NULL
			AND q.state = 'queued' AND q.host IS NULL
			AND (q.round, q.created, q.id) <= (me.round, me.created, me.id)), 0)
$$;

-- Place a new session: a host with a ready warm guest of IMAGE, else one
-- with its template and the most free room, the entry itself first among
-- equals; per-host caps hold (the chosen row is locked and rechecked),
-- per-user and per-image caps hold fleet-wide (advisory locks serialise
-- placements of one user and of one image). Returns the host, or NULL with
-- the session queued (its position in QUEUE_POS), or refuses with REASON.
CREATE FUNCTION nestor_place(p_id text, p_user text, p_app text, p_image text,
	p_memory_mb integer, p_entry text, p_user_max integer, p_image_max integer,
	OUT host text, OUT queue_pos integer, OUT reason text)
LANGUAGE plpgsql AS $$
DECLARE
	v_n integer;
	v_pick text;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('nestor user ' || p_user));
	IF p_user_max > 0 THEN
		SELECT count(*) INTO v_n FROM sessions s
		WHERE s.user_name = p_user AND nestor_live(s.state);
		IF v_n >= p_user_max THEN
			reason := format('you already have %s sessions, the most allowed', v_n);
			RETURN;
		END IF;
	END IF;
	IF p_image_max > 0 THEN
		PERFORM pg_advisory_xact_lock(hashtext('nestor image ' || p_image));
		SELECT count(*) INTO v_n FROM sessions s
		WHERE s.image = p_image AND nestor_live(s.state);
		IF v_n >= p_image_max THEN
			reason := format('%s already runs %s sessions, the most allowed', p_image, v_n);
			RETURN;
		END IF;
	END IF;

	-- the best host without a lock (a top-1 sort: FOR UPDATE would sort every
	-- host), then lock it and recheck its room: another placement may have just
	-- taken it (fleet-scale.md)
	FOR v_try IN 1..3 LOOP
		SELECT h.name INTO v_pick FROM hosts h
		WHERE h.up AND NOT h.drained AND h.accel <> '' AND p_image = ANY (h.images)
			AND h.sessions < h.max_sessions AND h.starting < h.max_starting
			AND h.memory_mb + p_memory_mb <= h.max_memory_mb
		ORDER BY (p_image = ANY (h.warm)) DESC, (p_image = ANY (h.templates)) DESC,
			(h.name = p_entry) DESC,
			least(h.max_sessions - h.sessions,
				(h.max_memory_mb - h.memory_mb) / greatest(p_memory_mb, 1)) DESC,
			h.name
		LIMIT 1;
		EXIT WHEN v_pick IS NULL;
		SELECT h.name INTO host FROM hosts h
		WHERE h.name = v_pick AND h.up AND NOT h.drained
			AND h.sessions < h.max_sessions AND h.starting < h.max_starting
			AND h.memory_mb + p_memory_mb <= h.max_memory_mb
		FOR UPDATE;
		EXIT WHEN host IS NOT NULL;
	END LOOP;

	IF host IS NOT NULL THEN
		UPDATE hosts h SET sessions = h.sessions + 1, starting = h.starting + 1,
			memory_mb = h.memory_mb + p_memory_mb WHERE h.name = host;
		INSERT INTO sessions (id, user_name, app, image, memory_mb, host, entry, state, placed)
		VALUES (p_id, p_user, p_app, p_image, p_memory_mb, host, p_entry, 'placed', now());
		PERFORM pg_notify('nestor_placed', host);
		RETURN;
	END IF;
	INSERT INTO sessions (id, user_name, app, image, memory_mb, entry, state, round)
	SELECT p_id, p_user, p_app, p_image, p_memory_mb, p_entry, 'queued', 1 + count(*)
	FROM sessions q WHERE q.user_name = p_user AND q.state = 'queued' AND q.host IS NULL;
	queue_pos := nestor_queue_pos(p_id);
END $$;

-- A host with room takes the head of the fleet queue (one winner: the row
-- is locked, others skip it). Returns the session's id, or NULL.
CREATE FUNCTION nestor_claim(p_host text, OUT id text) LANGUAGE plpgsql AS $$
DECLARE
	v_mem integer;
BEGIN
	PERFORM 1 FROM hosts h WHERE h.name = p_host AND h.up AND NOT h.drained AND h.accel <> ''
		AND h.sessions < h.max_sessions AND h.starting < h.max_starting FOR UPDATE;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	SELECT s.id, s.memory_mb INTO id, v_mem FROM sessions s, hosts h
	WHERE s.state = 'queued' AND s.host IS NULL AND h.name = p_host
		AND s.image = ANY (h.images)
		AND h.memory_mb + s.memory_mb <= h.max_memory_mb
	ORDER BY s.round, s.created, s.id LIMIT 1 FOR UPDATE OF s SKIP LOCKED;
	IF id IS NULL THEN
		RETURN;
	END IF;
	UPDATE sessions s SET host = p_host, state = 'placed', placed = now() WHERE s.id = nestor_claim.id;
	UPDATE hosts h SET sessions = h.sessions + 1, starting = h.starting + 1,
		memory_mb = h.memory_mb + v_mem WHERE h.name = p_host;
END $$;

-- A user arrives at entry P_ENTRY for APP: their live session of it on a
-- host that is up (a reconnect, wherever it runs), else a new one placed
-- (nestor_place: HOST set, or queued, or refused with REASON). NOTICE says
-- what became of their last session of APP if its host died.
CREATE FUNCTION nestor_connect(p_id text, p_user text, p_app text, p_image text,
	p_memory_mb integer, p_entry text, p_user_max integer, p_image_max integer,
	OUT id text, OUT host text, OUT state text, OUT queue_pos integer, OUT reason text,
	OUT existing boolean, OUT notice text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('nestor user ' || p_user));
	SELECT s.id, s.host, s.state INTO id, host, state FROM sessions s
	LEFT JOIN hosts h ON h.name = s.host
	WHERE s.user_name = p_user AND s.app = p_app AND nestor_live(s.state)
		AND s.state <> 'ending' AND (s.host IS NULL OR h.up)
	ORDER BY s.created LIMIT 1;
	existing := FOUND;
	IF existing THEN
		IF state = 'queued' AND host IS NULL THEN
			queue_pos := nestor_queue_pos(id);
		END IF;
		RETURN;
	END IF;
	-- told once: the lost session is ended now
	UPDATE sessions s SET state = 'ended' WHERE s.id = (
		SELECT l.id FROM sessions l WHERE l.user_name = p_user AND l.app = p_app
			AND l.state = 'lost' AND l.ended > now() - interval '1 hour'
		ORDER BY l.ended DESC LIMIT 1)
	RETURNING s.reason INTO notice;
	SELECT p.host, p.queue_pos, p.reason INTO host, queue_pos, reason
	FROM nestor_place(p_id, p_user, p_app, p_image, p_memory_mb, p_entry, p_user_max,
		p_image_max) p;
	id := p_id;
	state := CASE WHEN host IS NOT NULL THEN 'placed' WHEN reason IS NULL THEN 'queued' END;
END $$;

-- A host tells the fleet about one of its sessions (inserted if the fleet
-- never heard of it, as after an outage). A session the fleet thought lost
-- comes back if its host still has it. A start that is over, or an end,
-- gives its room back at once (the heartbeat recounts anyway). Locks the
-- host, then the session: the order the heartbeat's down-marking takes.
CREATE FUNCTION nestor_session_sync(p_id text, p_host text, p_user text, p_app text,
	p_image text, p_memory_mb integer, p_state text, p_reason text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	v_old text;
	v_host text;
	v_mem integer;
	v_was_starting boolean;
	v_ends boolean;
BEGIN
	PERFORM 1 FROM hosts h WHERE h.name = p_host FOR UPDATE;
	SELECT s.state, s.host, s.memory_mb INTO v_old, v_host, v_mem FROM sessions s
	WHERE s.id = p_id FOR UPDATE;
	IF FOUND AND (v_host IS DISTINCT FROM p_host OR NOT (nestor_live(v_old) OR v_old = 'lost'))
	THEN
		RETURN false; /* another host's, or ended by the fleet: end it there */
	END IF;
	INSERT INTO sessions AS s (id, user_name, app, image, memory_mb, host, entry, state,
		reason, placed, ended)
	VALUES (p_id, p_user, p_app, p_image, p_memory_mb, p_host, p_host, p_state, p_reason,
		now(), CASE WHEN nestor_live(p_state) THEN NULL ELSE now() END)
	ON CONFLICT ON CONSTRAINT sessions_pkey DO UPDATE SET state = EXCLUDED.state,
		reason = EXCLUDED.reason, ended = EXCLUDED.ended;
	IF v_old IS NULL OR NOT nestor_live(v_old) THEN
		RETURN true; /* counted at the next heartbeat */
	END IF;
	v_was_starting := v_old IN ('placed', 'starting') AND p_state NOT IN ('placed', 'starting');
	v_ends := NOT nestor_live(p_state);
	IF v_was_starting OR v_ends THEN
		UPDATE hosts h SET
			starting = greatest(h.starting - CASE WHEN v_old IN ('placed', 'starting')
				THEN 1 ELSE 0 END, 0),
			sessions = greatest(h.sessions - CASE WHEN v_ends THEN 1 ELSE 0 END, 0),
			memory_mb = greatest(h.memory_mb - CASE WHEN v_ends THEN v_mem ELSE 0 END, 0)
		WHERE h.name = p_host;
	END IF;
	RETURN true;
END $$;

-- A host tells the fleet every session it has (after an outage, a restart,
-- a lost write): JSON [{"id","user","app","image","memory_mb","state",
-- "reason"}]. Its live rows missing from the list are over; returns the
-- ids the host must end (the fleet ended them meanwhile: their users were
-- given new sessions).
CREATE FUNCTION nestor_host_sync(p_host text, p_sessions json)
RETURNS TABLE (end_id text) LANGUAGE plpgsql AS $$
DECLARE
	e json;
BEGIN
	PERFORM 1 FROM hosts h WHERE h.name = p_host FOR UPDATE;
	UPDATE sessions s SET state = 'ended', ended = now(),
		reason = 'ended while the fleet could not hear of it'
	WHERE s.host = p_host AND nestor_live(s.state) AND s.state <> 'placed'
		AND s.id NOT IN (SELECT x->>'id' FROM json_array_elements(p_sessions) x);
	FOR e IN SELECT * FROM json_array_elements(p_sessions) LOOP
		IF NOT nestor_session_sync(e->>'id', p_host, e->>'user', e->>'app', e->>'image',
				(e->>'memory_mb')::integer, e->>'state', coalesce(e->>'reason', '')) THEN
			end_id := e->>'id';
			RETURN NEXT;
		END IF;
	END LOOP;
END $$;

-- A one-time ticket for SESSION's host, valid TTL_S seconds; only its hash is kept.
CREATE FUNCTION nestor_ticket_issue(p_session text, p_token text, p_ttl_s integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM tickets t WHERE t.expires < now();
	INSERT INTO tickets (hash, session, host, expires)
	SELECT sha256(convert_to(p_token, 'UTF8')), s.id, s.host,
		now() + make_interval(secs => p_ttl_s)
	FROM sessions s WHERE s.id = p_session AND s.host IS NOT NULL AND nestor_live(s.state);
	RETURN FOUND;
END $$;

-- Spend a ticket at HOST for USER: the session it is for (id, app, image,
-- memory), or no row. A ticket works once, before it expires.
CREATE FUNCTION nestor_ticket_redeem(p_token text, p_host text, p_user text)
RETURNS TABLE (id text, app text, image text, memory_mb integer)
LANGUAGE sql AS $$
	WITH spent AS (
		DELETE FROM tickets t WHERE t.hash = sha256(convert_to(p_token, 'UTF8'))
		RETURNING t.session, t.host, t.expires)
	SELECT s.id, s.app, s.image, s.memory_mb FROM spent, sessions s
	WHERE s.id = spent.session AND spent.host = p_host AND spent.expires > now()
		AND s.user_name = p_user AND nestor_live(s.state)
$$;


