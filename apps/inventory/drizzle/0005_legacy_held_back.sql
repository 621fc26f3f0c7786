-- legacy_stock_delta now records the last sum applied, the held-back part apart. A row from before
-- holds the counted part only: the next capture adds the difference, and the floor records here
-- what it holds back of it (nothing lost, in either upgrade order).
ALTER TABLE "legacy_sync" ADD COLUMN "legacy_held_back" bigint DEFAULT 0 NOT NULL;
