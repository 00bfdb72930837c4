"""DynamoDB adapters over Crucible's single table: ``table`` holds the schema, the item
codec and the table helper; each other module stores one aggregate. Import the module
you need: nothing is re-exported here, so loading one aggregate loads no other."""
