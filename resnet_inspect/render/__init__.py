"""Rendering: the only place where records become text, tables, trees and diagrams."""
