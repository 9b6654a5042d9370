from swsctl.cli import main

main()
