-- Orders whose details are a JSON document: a STRING column read from a nested
-- object (as its JSON text) or from a string holding JSON, taken apart with Flink's
-- JSON functions and printed. Run it from the repository's root:
--
--     sluice run examples/sql/json-orders.sql
CREATE TABLE orders (
    order_id BIGINT,
    placed TIMESTAMP(3),
    doc STRING
) WITH (
    'connector' = 'filesystem',
    'path' = 'examples/sql/orders.jsonl',
    'format' = 'json'
);

CREATE TABLE details (
    order_id BIGINT,
    customer STRING,
    first_sku STRING,
    skus STRING,
    total DOUBLE,
    gift BOOLEAN,
    summary STRING
) WITH ('connector' = 'print');

INSERT INTO details
SELECT
    order_id,
    JSON_VALUE(doc, '$.customer.id'),
    JSON_VALUE(doc, '$.items[0].sku'),
    JSON_QUERY(doc, '$.items'),
    CAST(JSON_VALUE(doc, '$.total') AS DOUBLE),
    JSON_EXISTS(doc, 'strict $.gift'),
    JSON_ARRAY(order_id, JSON_VALUE(doc, '$.customer.name'))
FROM orders;
