from ceasr.cli import main

main()
