-- Nexmark q11, user sessions: the bids of each bidder in each session of activity, a
-- session ending once the bidder has made no bid for 10 seconds. Written with Flink's
-- group window function SESSION(...) in the GROUP BY, and SESSION_START and
-- SESSION_END for the session's bounds (the window table function
-- TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(dateTime), INTERVAL '10'
-- SECOND)) grouped by window_start and window_end is the same query).
CREATE TABLE nexmark_q11 (
    bidder BIGINT,
    bid_count BIGINT,
    starttime TIMESTAMP(3),
    endtime TIMESTAMP(3)
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q11
SELECT
    B.bidder,
    COUNT(*) AS bid_count,
    SESSION_START(B.`dateTime`, INTERVAL '10' SECOND) AS starttime,
    SESSION_END(B.`dateTime`, INTERVAL '10' SECOND) AS endtime
FROM bid B
GROUP BY B.bidder, SESSION(B.`dateTime`, INTERVAL '10' SECOND);
