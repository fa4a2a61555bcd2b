-- Nexmark q3, local item suggestion: who sells in category 10 in Oregon, Idaho or
-- California, and which auctions. A regular join of auctions and persons: every row
-- of both is kept, and each pair is emitted once, when its second row arrives. The
-- generator (the `nexmark` crate's) writes states in lower case, where Flink's writes
-- them in upper case.
CREATE TABLE nexmark_q3 (
    name VARCHAR,
    city VARCHAR,
    state VARCHAR,
    id BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q3
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca');
