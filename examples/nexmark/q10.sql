-- Nexmark q10, log to a partitioned file system: every bid written as CSV into a
-- directory per day and minute of its time (dt=2026-01-01/hm=00%3A00/part-*.csv, the
-- partition values escaped as Flink escapes them); the partition columns name the
-- directories and are not repeated in the files.
CREATE TABLE fs_sink (
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    dateTime TIMESTAMP(3),
    extra VARCHAR,
    dt STRING,
    hm STRING
) PARTITIONED BY (dt, hm) WITH (
    'connector' = 'filesystem',
    'path' = '/tmp/sluice-nexmark-q10',
    'format' = 'csv'
);

INSERT INTO fs_sink
SELECT auction, bidder, price, `dateTime`, extra,
       DATE_FORMAT(`dateTime`, 'yyyy-MM-dd'), DATE_FORMAT(`dateTime`, 'HH:mm')
FROM bid;
