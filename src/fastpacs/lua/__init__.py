"""Lua scripting as in Orthanc 1.10.1: /tools/execute-script and the callbacks of ``LuaScripts``."""
