-- A proxy held for maintenance (`sws-agent proxy drain`): the agent's rolling swap leaves it
-- alone, drained, until it is released.
ALTER TABLE proxies ADD COLUMN held boolean NOT NULL DEFAULT false;
