"""Backbone skeletons shared by several model families (they register nothing; family files import them)."""
