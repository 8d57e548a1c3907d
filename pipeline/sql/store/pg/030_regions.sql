-- PostgreSQL form of store schema version 30 (../030_regions.sql): region names for readers
-- of the store (the SQL panels of the dashboards, the supervisors' report), so that they can
-- show 包头市 rather than 150200.
--
-- regions   one row per prefecture-level region code of the province (GB/T 2260)
CREATE TABLE IF NOT EXISTS regions (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
INSERT INTO regions (code, name) VALUES
    ('150100', '呼和浩特市'),
    ('150200', '包头市'),
    ('150300', '乌海市'),
    ('150400', '赤峰市'),
    ('150500', '通辽市'),
    ('150600', '鄂尔多斯市'),
    ('150700', '呼伦贝尔市'),
    ('150800', '巴彦淖尔市'),
    ('150900', '乌兰察布市'),
    ('152200', '兴安盟'),
    ('152500', '锡林郭勒盟'),
    ('152900', '阿拉善盟')
ON CONFLICT DO NOTHING;
