-- Every key rotation and every disabling of an installation starts a new key generation;
-- installation tokens carry the generation they were minted in and stop working when it moves
-- on, so a rotated or disabled key cannot keep pushing through a token it obtained earlier.
ALTER TABLE installations ADD COLUMN key_generation BIGINT NOT NULL DEFAULT 0;
