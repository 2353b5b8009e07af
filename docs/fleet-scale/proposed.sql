-- The change proposed to data/fleet/schema.sql (since applied there), for trying with
-- `fleet_bench --sql docs/fleet-scale/proposed.sql`; see docs/fleet-scale.md.

CREATE OR REPLACE FUNCTION nestor_heartbeat(p_name text, p_gateway text, p_fingerprint text, p_accel text,
	p_max_sessions integer, p_max_starting integer, p_max_memory_mb integer,
	p_queued integer, p_warm text[], p_templates text[], p_start_ms integer,
	p_since timestamptz, p_down_s integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	v_drained boolean;
BEGIN
	-- wait for placements on this host to commit before the recount's snapshot
	PERFORM 1 FROM hosts h WHERE h.name = p_name FOR UPDATE;
	INSERT INTO hosts AS h (name, gateway, fingerprint, accel, max_sessions, max_starting,
		max_memory_mb, queued, warm, templates, start_ms, since)
	VALUES (p_name, p_gateway, p_fingerprint, p_accel, p_max_sessions, p_max_starting,
		p_max_memory_mb, p_queued, p_warm, p_templates, p_start_ms, p_since)
	ON CONFLICT (name) DO UPDATE SET gateway = EXCLUDED.gateway,
		fingerprint = EXCLUDED.fingerprint, accel = EXCLUDED.accel,
		max_sessions = EXCLUDED.max_sessions, max_starting = EXCLUDED.max_starting,
		max_memory_mb = EXCLUDED.max_memory_mb, queued = EXCLUDED.queued,
		warm = EXCLUDED.warm, templates = EXCLUDED.templates,
		start_ms = EXCLUDED.start_ms, since = EXCLUDED.since, up = true,
		heartbeat = now(),
		(sessions, starting, memory_mb) = (
			SELECT count(*), count(*) FILTER (WHERE s.state IN ('placed', 'starting')),
				coalesce(sum(s.memory_mb), 0)
			FROM sessions s WHERE s.host = p_name AND nestor_live(s.state))
	RETURNING drained INTO v_drained;

	WITH down AS (
		UPDATE hosts SET up = false
		WHERE up AND heartbeat < now() - make_interval(secs => p_down_s)
		RETURNING name)
	UPDATE sessions s SET state = 'lost', ended = now(),
		reason = 'its host ' || s.host || ' stopped answering'
	FROM down WHERE s.host = down.name AND nestor_live(s.state);
	RETURN v_drained;
END $$;

CREATE OR REPLACE FUNCTION nestor_place(p_id text, p_user text, p_app text, p_image text,
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

	-- the best host without a lock (a top-1 heapsort; FOR UPDATE would sort every host),
	-- then lock it and recheck its room: another placement may have just taken it
	FOR v_try IN 1..3 LOOP
		SELECT h.name INTO v_pick FROM hosts h
		WHERE h.up AND NOT h.drained AND h.accel <> ''
			AND h.sessions < h.max_sessions AND h.starting < h.max_starting
			AND h.memory_mb + p_memory_mb <= h.max_memory_mb
		ORDER BY (p_image = ANY (h.warm)) DESC, (p_image = ANY (h.templates)) DESC,
			(h.name = p_entry) DESC,
			least(h.max_sessions - h.sessions, (h.max_memory_mb - h.memory_mb) / greatest(p_memory_mb, 1)) DESC,
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
	INSERT INTO sessions (id, user_name, app, image, memory_mb, entry, state)
	VALUES (p_id, p_user, p_app, p_image, p_memory_mb, p_entry, 'queued');
	SELECT count(*) INTO queue_pos FROM sessions s WHERE s.state = 'queued';
END $$;
