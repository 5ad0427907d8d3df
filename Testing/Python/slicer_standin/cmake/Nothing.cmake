# Nothing: stands in for Slicer's extension config and CPack files.
